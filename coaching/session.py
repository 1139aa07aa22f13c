"""A coaching session: one robot, one episode at a time, driven by a fixed-rate control loop.

The loop (`coaching/control_loop.py`) alone touches the robot and the action chunker. Commands
from people (any thread: the web app, tests) are checked at once, written to storage at once
(segments, events), then queued for the loop; every step the loop hands back is given to the
recorder, which never blocks. So the loop never waits on the database, the browser or the VLA.

An episode is coached, or autonomous (a high-level policy sends the subtasks, with source
`policy`, see `coaching/autonomous_runner.py`) until a person takes over: from then on it is
`mixed` and every subtask a person sends is logged as a correction.
"""

from __future__ import annotations

import functools
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from coaching.clock import WallClock
from coaching.control_loop import ControlLoop, Frame, LoopState
from coaching.subgoals import SubgoalGenerator, SubgoalPreview
from coaching.low_level import PolicyDoesNotFit, check_fits
from policy_client import BasePolicy, ChunkingConfig, PolicyError
from coaching.robot import Observation, Robot
from storage import Recorder, RecorderFailed, RecorderOverflow, StorageError

MAX_SUBTASK_CHARS = 500
_UNCONFIRMED_TEXT = "The control loop did not confirm within 2 s, so the robot may not be holding: use the robot's own stop."
SPEEDS = ("slow", "normal", "fast")


class SessionError(Exception):
    """Something a person asked for that cannot be done; the message says what to do instead."""


def command(method: Callable) -> Callable:
    """One person's command at a time (several tabs may click at once), with the failures of the
    parts it reaches (VLA, database, robot) turned into one sentence for the page."""

    @functools.wraps(method)
    def run(self: "CoachingSession", *args: Any, **kwargs: Any) -> Any:
        with self._command_lock:
            try:
                return method(self, *args, **kwargs)
            except (PolicyError, StorageError, PolicyDoesNotFit) as e:
                raise SessionError(str(e)) from None

    return run


@dataclass
class EpisodeSettings:
    """What the coach chooses when starting an episode; the tags can be changed when it ends."""

    task: str  # the task text given to the VLA with every subtask
    scene: str  # what the robot resets to: a sim task family, or a real robot's scene name
    seed: int = 0
    speed: str = "normal"
    quality: int | None = None  # 1-5
    control_mode: str = "ee"
    notes: str = ""

    def metadata(self) -> dict[str, Any]:
        return {"speed": self.speed, "quality": self.quality, "control_mode": self.control_mode, "notes": self.notes}


@dataclass
class SegmentView:
    """What the timeline shows of one subtask."""

    id: int
    text: str
    source: str
    issued_s: float
    user: str
    with_subgoals: bool = False
    first_action_wall: float | None = None  # time.time() when its first action reached the robot
    issued_wall: float = 0.0
    end_s: float | None = None
    outcome: str | None = None
    mistake: bool = False
    confidence: float | None = None  # a policy's probability for its subtask


class CoachingSession:
    def __init__(self, robot: Robot, policy: BasePolicy, recorder: Recorder,
                 subgoals: SubgoalGenerator | None = None, chunking: ChunkingConfig | None = None,
                 clock: WallClock | None = None, idle_scene: tuple[str, int] | None = None):
        self.robot, self.policy, self.recorder, self.subgoals = robot, policy, recorder, subgoals
        self.description = robot.describe()
        self.clock = clock or WallClock()
        self._command_lock = threading.RLock()  # see `command`
        self._lock = threading.Lock()  # guards the fields below, shared with the people's threads
        self._episode: EpisodeSettings | None = None
        self._episode_id: int | None = None
        self._mode = "coached"  # of the running episode: coached | autonomous | mixed
        self._episode_start = 0.0
        self._paused = False
        self._segments: list[SegmentView] = []
        self._errors: list[str] = []
        self._preview: SubgoalPreview | None = None
        self._preview_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="subgoal-preview")
        self.loop = ControlLoop(robot, policy, chunking or ChunkingConfig(replan_after=5, prefetch=True), self.clock,
                                on_step=self._record_step, on_error=self._report, idle_scene=idle_scene)

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
        """Reset the robot into `settings.scene` and start logging; `mode` autonomous when a
        high-level policy will send the subtasks (its checkpoint id, if registered, is logged)."""
        settings = self._check_settings(settings)
        if mode not in ("coached", "autonomous"):
            raise SessionError("An episode starts coached or autonomous.")
        if self._episode_id is not None:
            raise SessionError("An episode is running; end it before starting a new one.")
        check_fits(self.policy.metadata, self.description, settings.control_mode)
        done = threading.Event()
        failure: list[BaseException] = []

        def reset(state: LoopState) -> None:
            try:
                self.loop.publish(self.robot.reset(settings.scene, settings.seed))
            except Exception as e:  # an unknown scene, a robot that refused: report, keep looping
                failure.append(e)
            state.chunker.new_subtask()
            state.subtask, state.paused, state.mode = None, False, settings.control_mode
            done.set()

        self.loop.submit(reset)
        if not done.wait(30):
            raise SessionError("The robot did not reset within 30 s; check the robot connection.")
        if failure:
            raise SessionError(f"Cannot start the episode: {failure[0]}")
        self.policy.reset()
        episode_id = self.recorder.start_episode(
            settings.task, self.description.to_dict(), mode=mode, user=user, seed=settings.seed,
            metadata=settings.metadata(), family=settings.scene, vla_hello=self.policy.metadata,
            policy_checkpoint_id=policy_checkpoint_id)
        with self._lock:
            self._episode, self._episode_id, self._mode = settings, episode_id, mode
            self._episode_start, self._paused, self._segments, self._errors = self.clock.now(), False, [], []
            self._preview = None
        return episode_id

    @command
    def end_episode(self, outcome: str, user: str, quality: int | None = None, notes: str | None = None) -> int:
        if outcome not in ("success", "failure", "aborted"):
            raise SessionError("End an episode as success, failure or aborted.")
        if quality is not None and not 1 <= int(quality) <= 5:
            raise SessionError("Quality is a whole number from 1 to 5.")
        self._require_episode()
        self._halt("end", user)
        self._close_segment(None)
        updates = {k: v for k, v in {"quality": quality, "notes": notes}.items() if v is not None}
        try:
            return self.recorder.end_episode(outcome, updates, mode=self._mode)
        finally:  # ended or not, the recorder holds no open episode of ours any more
            with self._lock:
                self._episode_id = None

    # -- subtasks ---------------------------------------------------------------------------
    @command
    def send_subtask(self, text: str, user: str, source: str = "coach", with_subgoals: bool = False,
                     confidence: float | None = None) -> SegmentView:
        text = self.check_subtask(text)
        self._require_episode()
        if source == "policy" and self._mode != "autonomous":
            raise SessionError("A person has taken over this episode: the policy sends no more subtasks.")
        if source != "policy" and self._mode == "autonomous":
            self._take_over(user)  # a person typing during an autonomous run takes over
        if source == "coach" and self._mode == "mixed":
            source = "correction"
        preview = self._preview if with_subgoals and self._preview and self._preview.text == text else None
        if with_subgoals and preview is None:
            raise SessionError("Preview this subtask first, or send it without subgoal images.")
        self._close_segment("superseded")
        stored = preview or (self._preview if self._preview and self._preview.text == text else None)
        now = self.clock.now()
        seg_id = self.recorder.start_segment(
            text, source, now - self._episode_start, user=user,
            subgoal_images=stored.images if stored else None, subgoal_sent=preview is not None,
            info={"confidence": round(confidence, 4)} if confidence is not None else None)
        view = SegmentView(seg_id, text, source, round(now - self._episode_start, 2), user,
                           with_subgoals=preview is not None, issued_wall=time.time(), confidence=confidence)
        prompt = {"task": self._episode.task, "subtask": text, "control_mode": self._episode.control_mode,
                  "metadata": self._episode.metadata(), "episode": self._episode_id, "segment": seg_id}
        if preview is not None:
            prompt["subgoal_images"] = preview.images

        def switch(state: LoopState) -> None:
            state.chunker.new_subtask()
            state.subtask, state.prompt, state.paused = view, prompt, False

        with self._lock:
            self._segments.append(view)
            self._paused = False
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
        if self._mode != "autonomous":
            raise SessionError("Only a running autonomous episode can be taken over.")
        self._take_over(user)

    def _take_over(self, user: str) -> None:
        with self._lock:
            self._mode = "mixed"
        if not self._halt("takeover", user):
            raise SessionError(_UNCONFIRMED_TEXT)
        self._close_segment("taken over")

    def note_confidence(self, confidence: float) -> None:
        """A policy's latest confidence in the subtask it is running (shown live, not logged)."""
        with self._lock:
            active = self._segments[-1] if self._segments and self._segments[-1].end_s is None else None
            if active is not None and active.source == "policy":
                active.confidence = float(confidence)

    def check_subtask(self, text: str) -> str:
        text = " ".join(str(text or "").split())
        if not text:
            raise SessionError("Type a subtask first, e.g. 'pick up the red cup'.")
        if len(text) > MAX_SUBTASK_CHARS:
            raise SessionError(f"That subtask is {len(text)} characters; keep it under {MAX_SUBTASK_CHARS}: "
                               "one short step at a time.")
        return text

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

        def go(state: LoopState) -> None:
            state.paused = False

        with self._lock:
            self._paused = False
        self.loop.submit(go)

    @command
    def stop(self, user: str) -> None:
        """Hold at once and drop the current subtask; the episode goes on with the next one."""
        self._require_episode()
        if not self._halt("stop", user):
            raise SessionError(_UNCONFIRMED_TEXT)
        self._close_segment("stopped")

    def _halt(self, kind: str, user: str) -> bool:
        """Tell the loop to hold now; True once it has (False: the loop is not answering)."""
        done = threading.Event()

        def hold(state: LoopState) -> None:
            state.chunker.new_subtask()
            if kind == "pause":
                state.paused = True
            else:
                state.subtask = None
            done.set()

        self.loop.submit(hold)
        self.recorder.event(kind, self.clock.now() - self._episode_start, user=user)
        return done.wait(2.0)

    # -- annotations ------------------------------------------------------------------------
    @command
    def mark_segment(self, segment_id: int, user: str, outcome: str | None = None, mistake: bool | None = None) -> None:
        from storage import edit_annotations

        self._require_episode()
        with self._lock:
            view = next((s for s in self._segments if s.id == segment_id), None)
        if view is None:
            raise SessionError(f"There is no segment {segment_id} in this episode.")
        edit_annotations(self.recorder.db, self._episode_id, user,
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
        text = self.check_subtask(text)
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
    def wait_frame(self, after_seq: int, timeout_s: float = 1.0) -> Frame | None:
        return self.loop.wait_frame(after_seq, timeout_s)

    def latest_observation(self) -> Observation | None:
        """What the robot saw last (cameras, state, task progress): what a high-level policy decides from."""
        return self.loop.observation

    def on_frame(self, listener: Callable[[Frame], None]) -> None:
        self.loop.on_frame(listener)

    def status(self) -> dict[str, Any]:
        with self._lock:
            active = self._segments[-1] if self._segments and self._segments[-1].end_s is None else None
            return {
                "episode_id": self._episode_id,
                "task": self._episode.task if self._episode else None,
                "mode": self._mode if self._episode_id else None,
                "confidence": active.confidence if active else None,
                "source": active.source if active else None,
                "elapsed_s": round(self.clock.now() - self._episode_start, 1) if self._episode_id else 0.0,
                "paused": self._paused,
                "subtask": active.text if active else None,
                "segments": [s.__dict__.copy() for s in self._segments],
                **self.loop.stats(),
                "recorder": self.recorder.stats.to_dict(),
                "errors": list(self._errors[-3:]),
            }

    # -- called by the loop thread --------------------------------------------------------
    def _record_step(self, obs: Observation, action: np.ndarray | None) -> None:
        if self._episode_id is None:
            return
        try:
            self.recorder.record_step(self.clock.now() - self._episode_start, obs.state, action, obs.images)
        except (RecorderOverflow, RecorderFailed, StorageError, ValueError) as e:
            self._report(str(e))

    def _report(self, message: str) -> None:
        with self._lock:
            if not self._errors or self._errors[-1] != message:
                self._errors.append(message)
                del self._errors[:-20]

    # -- helpers ----------------------------------------------------------------------------
    def _require_episode(self) -> int:
        with self._lock:
            if self._episode_id is None:
                raise SessionError("No episode is running; start one with New episode.")
            return self._episode_id

    def _close_segment(self, outcome: str | None) -> None:
        with self._lock:
            active = self._segments[-1] if self._segments and self._segments[-1].end_s is None else None
            if active is not None:
                active.end_s = round(self.clock.now() - self._episode_start, 2)
                active.outcome = active.outcome or outcome
        if active is not None:
            self.recorder.end_segment(active.id, active.outcome)

    def _check_settings(self, s: EpisodeSettings) -> EpisodeSettings:
        task = " ".join(str(s.task or "").split())
        if not task:
            raise SessionError("Describe the task first, e.g. 'bus the table'.")
        if len(task) > 2000:
            raise SessionError("Keep the task description under 2000 characters.")
        if s.speed not in SPEEDS:
            raise SessionError(f"Speed is one of {', '.join(SPEEDS)}.")
        if s.quality is not None and not 1 <= int(s.quality) <= 5:
            raise SessionError("Quality is a whole number from 1 to 5.")
        if s.control_mode not in self.description.control_modes:
            raise SessionError(f"This robot takes {', '.join(self.description.control_modes)} control, not {s.control_mode}.")
        if not isinstance(s.seed, int) or s.seed < 0:
            raise SessionError("The seed is a whole number, zero or more.")
        return EpisodeSettings(task, s.scene, s.seed, s.speed, s.quality, s.control_mode, s.notes or "")
