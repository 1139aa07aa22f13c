"""A coaching session: one robot, one episode at a time, driven by the one control loop.

It owns the episode's commands: start and end, send a subtask (a new segment), try again, pause,
resume, stop, take over and hand back, marks, subgoal previews. The loop
(`coaching/control_loop.py`) alone touches the robot and the action chunker. Commands (from
people on any thread, or from a subtask source through `apply`) are checked at once, written to
storage at once (segments, events), then run on the loop's thread; every step the loop hands back
goes to the recorder, which never blocks a real-time loop.

The app runs the loop threaded on the wall clock; `coachlab coach`, `coachlab play`, the benches
and tests run it stepped on the robot's simulated clock (`stepped=True`, see `coaching/episode.py`).

An episode is coached, or autonomous (the autonomy driver sends the subtasks, with source
`policy`) until a person takes over: from then on it is `mixed` and every subtask a person sends
is logged as a correction; a person may hand it back to the policy.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

import numpy as np

from coaching.activity import Activity, SubtaskStatus, closing_outcome, subtask_status
from coaching.clock import Clock, SimClock, WallClock
from coaching.control_loop import ControlLoop, Frame, LoopState
from coaching.vla import VLADoesNotFit, fit_vla
from coaching.prompt import vla_prompt
from coaching.robot import Observation, Robot
from coaching.settings import EpisodeSettings, SessionError, check_subtask
from coaching.subgoals import SubgoalGenerator, SubgoalPreview
from coaching.subtask_source import SubtaskCommand
from coaching.timeline import SegmentView
from policy_client import BasePolicy, ChunkingConfig, PolicyError
from storage import Recorder, RecorderFailed, RecorderOverflow, StorageError

_UNCONFIRMED_TEXT = "The control loop did not confirm within 2 s, so the robot may not be holding: use the robot's own stop."
# A stepped loop may outrun the database writer; it waits for room (simulated time stands still),
# while a real-time loop never waits on the database.
_STEPPED_RECORD_WAIT_S = 60.0


def command(method: Callable) -> Callable:
    """One person's command at a time (several tabs may click at once), with the failures of the
    parts it reaches (VLA, database, robot) turned into one sentence for the page."""

    @functools.wraps(method)
    def run(self: "CoachingSession", *args: Any, **kwargs: Any) -> Any:
        with self._command_lock:
            try:
                return method(self, *args, **kwargs)
            except (PolicyError, StorageError, VLADoesNotFit) as e:
                raise SessionError(str(e)) from None

    return run


class _Unrecorded:
    """Where a session that logs nothing (`coachlab play` without --db) gets its ids from."""

    def __init__(self) -> None:
        self._episodes, self._segments = itertools.count(1), itertools.count(1)
        self.stats = None

    def start_episode(self, *args: Any, **kwargs: Any) -> int:
        return next(self._episodes)

    def start_segment(self, *args: Any, **kwargs: Any) -> int:
        return next(self._segments)

    def end_episode(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def end_segment(self, *args: Any, **kwargs: Any) -> None: ...

    def event(self, *args: Any, **kwargs: Any) -> None: ...

    def record_step(self, *args: Any, **kwargs: Any) -> None: ...


class CoachingSession:
    def __init__(self, robot: Robot, vla: BasePolicy, recorder: Recorder | None = None,
                 subgoals: SubgoalGenerator | None = None, idle_reset: tuple[str, int] | None = None,
                 stepped: bool = False):
        """`stepped`: the loop is run by the caller (`step()`), on the robot's simulated clock;
        else a real-time thread on the wall clock. Without a `recorder` nothing is logged."""
        self.robot, self.vla, self.subgoals, self.stepped = robot, vla, subgoals, stepped
        self.recorder = recorder if recorder is not None else _Unrecorded()
        self.logging = recorder is not None
        self.description = robot.describe()
        self.clock: Clock = SimClock(self._robot_time) if stepped else WallClock()
        self._command_lock = threading.RLock()  # see `command`
        self._lock = threading.Lock()  # guards the fields below, shared with the people's threads
        self._episode: EpisodeSettings | None = None
        self._episode_id: int | None = None
        self._last_episode_id: int | None = None  # the episode whose segments the timeline shows, ended or not
        self._mode = "coached"  # of the running episode: coached | autonomous | mixed
        self._episode_start = 0.0
        self._driver = "person"  # who sends the subtasks now: person | policy
        self.last_outcome: str | None = None  # how the last episode ended
        self._paused = False
        self._segments: list[SegmentView] = []
        self._errors: list[str] = []
        self._steps_total: int | None = None  # the steps left at the start, where the robot reports them
        self._activity = Activity()  # the arm's motion per segment: running or idle
        # The episode the loop's steps are recorded into: set once the recorder has opened it, cleared
        # before the recorder is asked to close it, both under `_record_lock`, which the loop thread
        # holds while it hands a step over. So no step can reach a recorder whose episode has ended or
        # is ending (issue 21's fault 1: "record_step was called with no episode being recorded").
        self._record_lock = threading.Lock()
        self._recording: int | None = None
        self._preview: SubgoalPreview | None = None
        self._preview_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="subgoal-preview")
        # Prefetching keeps a real-time robot from waiting on the VLA; on a simulated clock it would
        # make results depend on wall time, so a stepped loop waits for each chunk instead.
        self.loop = ControlLoop(robot, vla, ChunkingConfig(prefetch=not stepped), self.clock,
                                on_step=self._record_step, on_error=self._report, idle_reset=idle_reset,
                                stepped=stepped)

    def _robot_time(self) -> float:
        obs = self.loop.observation
        return obs.timestamp if obs is not None else 0.0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> "CoachingSession":
        try:
            self.loop.start()
        except RuntimeError as e:
            raise SessionError(f"The robot could not start: {e}.") from None
        return self

    def close(self) -> None:
        """End a running episode as aborted, stop the loop and close the robot (on the loop's thread)."""
        try:
            if self._episode_id is not None:
                self.end_episode("aborted", user="system")
        finally:
            self.loop.stop()
            try:
                if self.subgoals is not None and hasattr(self.subgoals, "close"):
                    self._preview_pool.submit(self.subgoals.close).result(timeout=10)  # on the thread that built it
            except (FutureTimeout, RuntimeError):
                pass  # a preview still running; the process is going away anyway
            self._preview_pool.shutdown(wait=False, cancel_futures=True)

    # -- episode ----------------------------------------------------------------------------
    @command
    def start_episode(self, settings: EpisodeSettings, user: str, mode: str = "coached",
                      policy_checkpoint_id: int | None = None) -> int:
        """Reset the robot into `settings.task_family` and start logging; `mode` autonomous when a
        high-level policy will send the subtasks (its checkpoint id, if registered, is logged)."""
        settings = settings.checked(self.description.control_modes)
        if mode not in ("coached", "autonomous"):
            raise SessionError("An episode starts coached or autonomous.")
        if self._episode_id is not None:
            raise SessionError("An episode is running; end it before starting a new one.")
        fit_vla(self.vla, self.description, settings.control_mode)
        done = threading.Event()
        failure: list[BaseException] = []

        def reset(state: LoopState) -> None:
            try:
                first = self.robot.reset(settings.task_family, settings.seed)
                self.loop.publish(first)
                self._steps_total = (first.task_progress or {}).get("steps_left")
            except Exception as e:  # an unknown task family, a robot that refused: report, keep looping
                failure.append(e)
            state.chunker.new_subtask()
            state.subtask, state.paused, state.mode = None, False, settings.control_mode
            done.set()

        self.loop.submit(reset)
        if not done.wait(30):
            raise SessionError("The robot did not reset within 30 s; check the robot connection.")
        if failure:
            raise SessionError(f"Cannot start the episode: {failure[0]}")
        self.vla.reset()
        episode_id = self.recorder.start_episode(
            settings.task, self.description.to_dict(), mode=mode, user=user, seed=settings.seed,
            metadata=settings.metadata(), task_family=settings.task_family, vla_hello=self.vla.metadata,
            policy_checkpoint_id=policy_checkpoint_id)
        with self._record_lock, self._lock:
            self._recording = episode_id
            self._episode, self._episode_id, self._mode = settings, episode_id, mode
            self._last_episode_id = episode_id
            self._driver = "policy" if mode == "autonomous" else "person"
            self._episode_start, self._paused, self._segments, self._errors = self.clock.now(), False, [], []
            self._preview = None
        return episode_id

    @command
    def end_episode(self, outcome: str, user: str, quality: int | None = None, notes: str | None = None,
                    closes_as: str | None = None) -> int:
        """End the episode as `outcome`; the active segment ends as `closes_as` (a source's judgement),
        else as completed or refused if it was (`coaching/activity.py`), else unjudged."""
        if outcome not in ("success", "failure", "aborted"):
            raise SessionError("End an episode as success, failure or aborted.")
        if quality is not None and not 1 <= int(quality) <= 5:
            raise SessionError("Quality is a whole number from 1 to 5.")
        self._require_episode()
        ended = closing_outcome(self._active_status())  # before the halt, while the arm still shows it
        self._halt("end", user)
        self._close_segment(closes_as or (ended if ended != "replaced" else None))
        updates = {k: v for k, v in {"quality": quality, "notes": notes}.items() if v is not None}
        self.last_outcome = outcome
        with self._record_lock:  # waits for a step being handed over; none is handed over after this
            self._recording = None
        try:
            return self.recorder.end_episode(outcome, updates, mode=self._mode)
        finally:  # ended or not, the recorder holds no open episode of ours any more
            with self._lock:
                self._episode_id = None

    # -- subtasks ---------------------------------------------------------------------------
    @command
    def send_subtask(self, text: str, user: str, source: str = "coach", with_subgoals: bool = False,
                     confidence: float | None = None, mistake: bool = False, closes_as: str | None = None) -> SegmentView:
        """Run `text` now as a new segment from `source` (coach | correction | policy); the active
        segment ends as `closes_as` if the sender judged it, else by what it was doing
        (completed, refused, replaced: `coaching/activity.py`)."""
        text = check_subtask(text)
        self._require_episode()
        if source == "policy" and self._driver != "policy":
            raise SessionError("A person has taken over this episode: the policy sends no more subtasks.")
        if source != "policy" and self._driver == "policy" and self._mode != "coached":
            self._take_over(user)  # a person typing during an autonomous run takes over
        if source == "coach" and self._mode == "mixed":
            source = "correction"
        preview = self._preview if with_subgoals and self._preview and self._preview.text == text else None
        if with_subgoals and preview is None:
            raise SessionError("Preview this subtask first, or send it without subgoal images.")
        self._close_segment(closes_as or closing_outcome(self._active_status()))
        stored = preview or (self._preview if self._preview and self._preview.text == text else None)
        now = self.clock.now()
        seg_id = self.recorder.start_segment(
            text, source, now - self._episode_start, user=user, mistake=mistake,
            subgoal_images=stored.images if stored else None, subgoal_sent=preview is not None,
            info={"confidence": round(confidence, 4)} if confidence is not None else None)
        number = len(self._segments)
        view = SegmentView(seg_id, number, text, source, round(now - self._episode_start, 2), user,
                           with_subgoals=preview is not None, issued_wall=time.time(), mistake=mistake,
                           confidence=confidence)
        prompt = vla_prompt(self._episode.task, text, self._episode.control_mode, self._episode.metadata(),
                            episode=self._vla_episode_key(), segment=number,
                            subgoal_images=preview.images if preview is not None else None)

        def switch(state: LoopState) -> None:
            state.chunker.new_subtask()
            state.subtask, state.prompt, state.paused = view, prompt, False

        with self._lock:
            self._segments.append(view)
            self._paused = False
            if self._preview is not None and self._preview.text != text:
                self._preview = None  # it imagined another subtask: no longer shown
        self.loop.submit(switch)
        return view

    @command
    def try_again(self, user: str) -> SegmentView:
        """Send the last subtask again as a correction (YAY Robot's "try again")."""
        with self._lock:
            last = self._segments[-1] if self._segments else None
        if last is None:
            raise SessionError("There is no subtask to try again yet; type one first.")
        return self.send_subtask(last.text, user, source="correction")

    @command
    def take_over(self, user: str) -> None:
        """A person takes an autonomous episode over: the robot holds, the policy's subtask ends,
        the episode becomes mixed and the person's subtasks from now on are corrections."""
        self._require_episode()
        if self._mode == "coached" or self._driver != "policy":
            raise SessionError("Only a running autonomous episode can be taken over.")
        self._take_over(user)

    @command
    def hand_back(self, user: str) -> None:
        """A person who took an episode over hands it back to the policy (it stays mixed)."""
        self._require_episode()
        if self._mode != "mixed" or self._driver != "person":
            raise SessionError("Only an autonomous episode a person has taken over can be handed back.")
        self.recorder.event("hand_back", self.clock.now() - self._episode_start, user=user)
        with self._lock:
            self._driver = "policy"

    @command
    def apply(self, cmd: SubtaskCommand, user: str) -> None:
        """Carry out what a subtask source says (`coaching/subtask_source.py`)."""
        if cmd.kind == "subtask":
            self.send_subtask(cmd.text, user, source=cmd.source, confidence=cmd.confidence, mistake=cmd.mistake,
                              closes_as=cmd.closes_as)
        elif cmd.kind == "end":
            self.end_episode(cmd.outcome or "failure", user, notes=cmd.note, closes_as=cmd.closes_as)
        elif cmd.kind == "take_over":
            self.take_over(user)
        else:
            self.hand_back(user)

    def _take_over(self, user: str) -> None:
        with self._lock:
            self._mode, self._driver = "mixed", "person"
        if not self._halt("takeover", user):
            raise SessionError(_UNCONFIRMED_TEXT)
        self._close_segment("taken over")

    def note_confidence(self, confidence: float) -> None:
        """A policy's latest confidence in the subtask it is running (shown live, not logged)."""
        with self._lock:
            active = self._segments[-1] if self._segments and self._segments[-1].end_s is None else None
            if active is not None and active.source == "policy":
                active.confidence = float(confidence)

    # -- pause / resume / stop --------------------------------------------------------------
    @command
    def pause(self, user: str) -> None:
        self._require_episode()
        if not self._halt("pause", user):
            raise SessionError(_UNCONFIRMED_TEXT)
        with self._lock:
            self._paused = True

    @command
    def resume(self, user: str) -> None:
        self._require_episode()
        self.recorder.event("resume", self.clock.now() - self._episode_start, user=user)

        resumed = threading.Event()

        def go(state: LoopState) -> None:
            state.paused = False
            self._activity.resumed(self.clock.now())
            resumed.set()

        self.loop.submit(go)
        # the page shows paused until the loop has resumed (before, it showed the arm's stillness
        # during the pause as "likely done" for a tick); a loop that does not answer resumes late
        resumed.wait(2.0)
        with self._lock:
            self._paused = False

    @command
    def stop(self, user: str) -> None:
        """Hold at once and drop the current subtask; the episode goes on with the next one. Stopping
        ends a pause too: with no subtask the robot holds anyway, and a page showed PAUSED over STOPPED."""
        self._require_episode()
        if not self._halt("stop", user):
            raise SessionError(_UNCONFIRMED_TEXT)
        with self._lock:
            self._paused = False
        self._close_segment("stopped")

    def _halt(self, kind: str, user: str) -> bool:
        """Tell the loop to hold now; True once it has (False: the loop is not answering)."""
        done = threading.Event()

        def hold(state: LoopState) -> None:
            state.chunker.new_subtask()
            if kind == "pause":
                state.paused = True
            else:
                state.subtask, state.paused = None, False
            done.set()

        self.loop.submit(hold)
        self.recorder.event(kind, self.clock.now() - self._episode_start, user=user)
        return done.wait(2.0)

    # -- annotations ------------------------------------------------------------------------
    @command
    def mark_segment(self, segment_id: int, user: str, outcome: str | None = None, mistake: bool | None = None) -> None:
        """Mark a segment of the running episode, or of the one just ended (its timeline is still shown)."""
        from storage import edit_annotations

        with self._lock:
            episode_id = self._last_episode_id
            view = next((s for s in self._segments if s.id == segment_id), None)
        if episode_id is None:
            raise SessionError("No episode yet; start one with Start episode.")
        if view is None:
            raise SessionError(f"There is no segment {segment_id} in this episode.")
        if not self.logging:
            raise SessionError("This session logs nothing, so there is nothing to mark.")
        edit_annotations(self.recorder.db, episode_id, user,
                         segment_outcomes={segment_id: outcome} if outcome else None,
                         segment_mistakes={segment_id: mistake} if mistake is not None else None)
        with self._lock:
            if outcome:
                view.outcome = outcome
            if mistake is not None:
                view.mistake = mistake

    # -- subgoal previews -------------------------------------------------------------------
    def preview(self, text: str, timeout_s: float = 60.0) -> SubgoalPreview:
        """Generate the subgoal images of `text` from the latest observation, without moving the robot."""
        text = check_subtask(text)
        if self.subgoals is None:
            raise SessionError("No subgoal generator is configured; start the app with --subgoals.")
        obs = self.loop.observation
        with self._lock:
            settings = self._episode
        if obs is None:
            raise SessionError("No camera image yet; wait for the robot to come up.")
        future: Future = self._preview_pool.submit(
            self.subgoals.generate, obs, text, settings.task if settings else "",
            settings.control_mode if settings else "ee")
        try:
            result = future.result(timeout=timeout_s)
        except FutureTimeout:
            raise SessionError(f"The preview took longer than {timeout_s:.0f} s; try a shorter subtask.") from None
        except (PolicyError, ValueError) as e:
            raise SessionError(f"No preview: {e}") from None
        if result.refused:
            raise SessionError(result.refused)
        preview = SubgoalPreview(text, result.images)
        with self._lock:
            self._preview = preview
        return preview

    # -- what viewers read ------------------------------------------------------------------
    @property
    def latest_preview(self) -> SubgoalPreview | None:
        """The episode's latest subgoal preview while it is still the one to show (None once another
        subtask was sent)."""
        with self._lock:
            return self._preview

    @property
    def previewed_text(self) -> str | None:
        """The subtask of the latest subgoal preview, if any."""
        preview = self.latest_preview
        return preview.text if preview is not None else None

    @property
    def episode_id(self) -> int | None:
        """The running episode's id, None between episodes."""
        return self._episode_id

    def wait_frame(self, after_seq: int, timeout_s: float = 1.0) -> Frame | None:
        return self.loop.wait_frame(after_seq, timeout_s)

    def latest_observation(self) -> Observation | None:
        """What the robot saw last (cameras, state, task progress): what a high-level policy decides from."""
        return self.loop.observation

    def on_frame(self, listener: Callable[[Frame], None]) -> None:
        self.loop.on_frame(listener)

    def _active_status(self) -> SubtaskStatus:
        """What the active subtask is doing (`coaching/activity.py`); waiting when there is none."""
        with self._lock:
            active = self._segments[-1] if self._segments and self._segments[-1].end_s is None else None
            last, paused = (self._segments[-1] if self._segments else None), self._paused
        if active is None:
            return SubtaskStatus("stopped" if last is not None and last.outcome == "stopped" else "waiting")
        loop = self.loop.stats()
        mine = loop["vla_segment"] == active.id
        accepted, idle = self._activity.of(active.id, self.clock.now())
        return subtask_status(accepted, idle, paused, mine and loop["vla_refused"], loop["vla_note"] if mine else None,
                              loop["vla_error"] if mine else None)

    def _task_progress(self) -> float | None:
        """The share of the task done, 0..1, where the robot reports the steps left (`Observation.task_progress`)."""
        obs, total = self.loop.observation, self._steps_total
        left = (obs.task_progress or {}).get("steps_left") if obs is not None else None
        if self._episode_id is None or not total or left is None:
            return None
        return round(max(0.0, min(1.0, 1.0 - left / total)), 3)

    def status(self) -> dict[str, Any]:
        now = self._active_status() if self._episode_id is not None else SubtaskStatus("waiting")
        with self._lock:
            active = self._segments[-1] if self._segments and self._segments[-1].end_s is None else None
            return {
                "subtask_status": now.status,
                "subtask_reason": now.reason,
                "task_progress": self._task_progress(),
                "last_subtask": self._segments[-1].text if self._segments else None,
                "settings": self._episode.__dict__.copy() if self._episode else None,
                "episode_id": self._episode_id,
                "task": self._episode.task if self._episode else None,
                "mode": self._mode if self._episode_id else None,
                "driver": self._driver if self._episode_id else None,
                "episode_time_s": self.clock.now() - self._episode_start if self._episode_id else 0.0,
                "confidence": active.confidence if active else None,
                "source": active.source if active else None,
                "elapsed_s": round(self.clock.now() - self._episode_start, 1) if self._episode_id else 0.0,
                "paused": self._paused,
                "subtask": active.text if active else None,
                "subtask_id": active.id if active else None,
                # the wall time the arm last moved for the active subtask: `bench ui` times idle from it
                "moved_last_wall": self._activity.last_move_wall(active.id) if active else None,
                "segments": [s.__dict__.copy() for s in self._segments],
                **self.loop.stats(),
                **self._vla_process(),
                "recorder": self.recorder.stats.to_dict() if self.logging else None,
                "errors": list(self._errors[-3:]),
            }

    # -- called by the loop thread --------------------------------------------------------
    def _record_step(self, obs: Observation, action: np.ndarray | None, segment_id: int | None) -> None:
        self._activity.observe(obs.state, segment_id, self.clock.now(), self.loop.vla_reply)
        with self._record_lock:
            if self._recording is None:  # between episodes, or the episode is ending
                return
            try:
                self.recorder.record_step(self.clock.now() - self._episode_start, obs.state, action, obs.images,
                                          segment_id=segment_id, wait_s=_STEPPED_RECORD_WAIT_S if self.stepped else 0.0)
            except (RecorderOverflow, RecorderFailed, StorageError, ValueError) as e:
                if self.stepped:
                    raise  # a stepped run waits for the database; a step it still cannot log stops the run, loudly
                self._report(str(e))

    def _report(self, message: str) -> None:
        with self._lock:
            if not self._errors or self._errors[-1] != message:
                self._errors.append(message)
                del self._errors[:-20]

    # -- helpers ----------------------------------------------------------------------------
    def _vla_process(self) -> dict[str, Any]:
        """The supervisor's word on a VLA process this program started: restarts and the last note; a
        dead process turns the VLA light red at once, before any request has timed out."""
        supervisor = getattr(self.vla, "supervisor", None)
        if supervisor is None:
            return {"vla_restarts": None, "vla_process_note": None}
        down = {"vla_error": supervisor.note or "The VLA process is not running."} if not supervisor.up else {}
        return {"vla_restarts": supervisor.restarts, "vla_process_note": supervisor.note, **down}

    def _vla_episode_key(self) -> int | str:
        """The prompt's `episode` field. A stepped run names an episode by its task family and seed, so a
        VLA that draws per-try noise from it (the sim skill policy does) makes the same draws for a
        seed whatever ran before or which database logs it; a live session uses the episode's id."""
        return f"{self._episode.task_family}:{self._episode.seed}" if self.stepped else self._episode_id

    def _require_episode(self) -> int:
        with self._lock:
            if self._episode_id is None:
                raise SessionError("No episode is running; start one with Start episode.")
            return self._episode_id

    def _close_segment(self, outcome: str | None) -> None:
        with self._lock:
            active = self._segments[-1] if self._segments and self._segments[-1].end_s is None else None
            if active is not None:
                active.end_s = round(self.clock.now() - self._episode_start, 2)
                active.outcome = active.outcome or outcome
        if active is not None:
            self.recorder.end_segment(active.id, active.outcome)
