"""A coaching session: one robot, one episode at a time, a control loop at a fixed rate in its own thread.

The loop thread alone touches the robot and the action chunker: every tick it applies pending
commands (reset, new subtask, pause, stop), observes, publishes the camera frames for viewers,
asks the chunker for an action (holding when there is none), acts, and hands the step to the
recorder, which never blocks. Commands from people (any thread: the web app, tests) are checked
at once, written to storage at once (segments, events), then queued for the loop; so the loop
never waits on the database, the browser or the VLA.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from coaching.clock import WallClock
from coaching.subgoals import SubgoalGenerator, SubgoalPreview
from coaching.low_level import PolicyDoesNotFit, check_fits
from policy_client import ActionChunker, BasePolicy, ChunkingConfig, PolicyError
from sim.robot import Observation, Robot
from storage import Recorder, RecorderFailed, RecorderOverflow, StorageError

MAX_SUBTASK_CHARS = 500
_UNCONFIRMED_TEXT = "The control loop did not confirm within 2 s, so the robot may not be holding: use the robot's own stop."
SPEEDS = ("slow", "normal", "fast")
LOOP_NICE = -10


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


@dataclass
class Frame:
    seq: int
    wall_time: float  # time.time() when rendered
    images: dict[str, np.ndarray]


@dataclass
class _Loop:
    """State only the loop thread reads and writes."""

    chunker: ActionChunker
    mode: str = "ee"
    subtask: SegmentView | None = None
    paused: bool = False
    prompt: dict[str, Any] = field(default_factory=dict)


def raise_priority(nice: int) -> None:
    """Lower the calling thread's nice value (threads it starts inherit it), if permitted.

    The control loop is the one part with a deadline; pages, previews and encoding can be late,
    and browsers may share the machine. Linux gives each thread its own nice value. (Raising
    the whole app process instead measured worse: its web threads then crowd the loop out of
    Python's GIL.) Without the privilege, the loop runs at normal priority.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(nice, os.getpriority(os.PRIO_PROCESS, 0)))
    except (PermissionError, OSError, AttributeError):
        pass


class CoachingSession:
    def __init__(self, robot: Robot, policy: BasePolicy, recorder: Recorder,
                 subgoals: SubgoalGenerator | None = None, chunking: ChunkingConfig | None = None,
                 clock: WallClock | None = None, idle_scene: tuple[str, int] | None = None):
        self.robot, self.policy, self.recorder, self.subgoals = robot, policy, recorder, subgoals
        self.description = robot.describe()
        self.clock = clock or WallClock()
        self._chunking = chunking or ChunkingConfig(replan_after=5, prefetch=True)
        self._commands: queue.SimpleQueue[Callable[[_Loop], None]] = queue.SimpleQueue()
        self._command_lock = threading.RLock()  # see `command`
        self._lock = threading.Lock()  # guards the fields below, shared with the people's threads
        self._frame_ready = threading.Condition(self._lock)
        self._frame: Frame | None = None
        self._frame_listeners: list[Callable[[Frame], None]] = []
        self._observation: Observation | None = None
        self._episode: EpisodeSettings | None = None
        self._episode_id: int | None = None
        self._episode_start = 0.0
        self._paused = False
        self._segments: list[SegmentView] = []
        self._errors: list[str] = []
        self._tick_times: list[float] = []
        self._tick_ms: list[float] = []  # how long each tick's work took: the loop's headroom
        self._preview: SubgoalPreview | None = None
        self._preview_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="subgoal-preview")
        self._running = threading.Event()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._last_tick = 0.0
        self._idle_scene = idle_scene
        self._rtt_ms: float | None = None  # written by the loop thread, read by viewers
        self._vla_error: str | None = None
        self._vla_note: str | None = None  # the VLA's own word on the subtask, e.g. why it refused
        self._thread = threading.Thread(target=self._run, name="control-loop", daemon=True)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> "CoachingSession":
        self._running.set()
        self._thread.start()
        if not self._ready.wait(60):
            raise SessionError("The robot did not come up within 60 s; check the robot connection.")
        if self._startup_error is not None:
            raise SessionError(f"The robot could not start: {self._startup_error}")
        return self

    def close(self) -> None:
        """End a running episode as aborted, stop the loop and close the robot (on the loop's thread)."""
        try:
            if self._episode_id is not None:
                self.end_episode("aborted", user="system")
        finally:
            self._running.clear()
            self._thread.join(timeout=10)
            try:
                if self.subgoals is not None and hasattr(self.subgoals, "close"):
                    self._preview_pool.submit(self.subgoals.close).result(timeout=10)  # on the thread that built it
            except (FutureTimeout, RuntimeError):
                pass  # a preview still running; the process is going away anyway
            self._preview_pool.shutdown(wait=False, cancel_futures=True)

    # -- episode ----------------------------------------------------------------------------
    @command
    def start_episode(self, settings: EpisodeSettings, user: str) -> int:
        settings = self._check_settings(settings)
        if self._episode_id is not None:
            raise SessionError("An episode is running; end it before starting a new one.")
        check_fits(self.policy.metadata, self.description, settings.control_mode)
        done = threading.Event()
        failure: list[BaseException] = []

        def reset(loop: _Loop) -> None:
            try:
                obs = self.robot.reset(settings.scene, settings.seed)
                self._publish(obs)
            except Exception as e:  # an unknown scene, a robot that refused: report, keep looping
                failure.append(e)
            loop.chunker.new_subtask()
            loop.subtask, loop.paused, loop.mode = None, False, settings.control_mode
            done.set()

        self._commands.put(reset)
        if not done.wait(30):
            raise SessionError("The robot did not reset within 30 s; check the robot connection.")
        if failure:
            raise SessionError(f"Cannot start the episode: {failure[0]}")
        self.policy.reset()
        episode_id = self.recorder.start_episode(
            settings.task, self.description.to_dict(), mode="coached", user=user, seed=settings.seed,
            metadata=settings.metadata(), family=settings.scene, vla_hello=self.policy.metadata)
        with self._lock:
            self._episode, self._episode_id = settings, episode_id
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
            return self.recorder.end_episode(outcome, updates)
        finally:  # ended or not, the recorder holds no open episode of ours any more
            with self._lock:
                self._episode_id = None

    # -- subtasks ---------------------------------------------------------------------------
    @command
    def send_subtask(self, text: str, user: str, source: str = "coach", with_subgoals: bool = False) -> SegmentView:
        text = self.check_subtask(text)
        self._require_episode()
        preview = self._preview if with_subgoals and self._preview and self._preview.text == text else None
        if with_subgoals and preview is None:
            raise SessionError("Preview this subtask first, or send it without subgoal images.")
        self._close_segment("superseded")
        stored = preview or (self._preview if self._preview and self._preview.text == text else None)
        now = self.clock.now()
        seg_id = self.recorder.start_segment(
            text, source, now - self._episode_start, user=user,
            subgoal_images=stored.images if stored else None, subgoal_sent=preview is not None)
        view = SegmentView(seg_id, text, source, round(now - self._episode_start, 2), user,
                           with_subgoals=preview is not None, issued_wall=time.time())
        prompt = {"task": self._episode.task, "subtask": text, "control_mode": self._episode.control_mode,
                  "metadata": self._episode.metadata(), "episode": self._episode_id, "segment": seg_id}
        if preview is not None:
            prompt["subgoal_images"] = preview.images

        def switch(loop: _Loop) -> None:
            loop.chunker.new_subtask()
            loop.subtask, loop.prompt, loop.paused = view, prompt, False

        with self._lock:
            self._segments.append(view)
            self._paused = False
        self._commands.put(switch)
        return view

    @command
    def try_again(self, user: str) -> SegmentView:
        """Send the last subtask again as a correction (YAY Robot's "try again")."""
        with self._lock:
            last = self._segments[-1] if self._segments else None
        if last is None:
            raise SessionError("There is no subtask to try again yet; type one first.")
        return self.send_subtask(last.text, user, source="correction")

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

        def go(loop: _Loop) -> None:
            loop.paused = False

        with self._lock:
            self._paused = False
        self._commands.put(go)

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

        def hold(loop: _Loop) -> None:
            loop.chunker.new_subtask()
            if kind == "pause":
                loop.paused = True
            else:
                loop.subtask = None
            done.set()

        self._commands.put(hold)
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
        with self._lock:
            obs, settings = self._observation, self._episode
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
        """The newest frame, once it is newer than `after_seq` (or None after the timeout)."""
        with self._frame_ready:
            self._frame_ready.wait_for(lambda: self._frame is not None and self._frame.seq > after_seq, timeout_s)
            return self._frame if self._frame is not None and self._frame.seq > after_seq else None

    def on_frame(self, listener: Callable[[Frame], None]) -> None:
        """Call `listener(frame)` from the loop thread for every new frame; it must return at once."""
        with self._lock:
            self._frame_listeners.append(listener)

    def status(self) -> dict[str, Any]:
        with self._lock:
            ticks = self._tick_times[-50:]
            active = self._segments[-1] if self._segments and self._segments[-1].end_s is None else None
            return {
                "episode_id": self._episode_id,
                "task": self._episode.task if self._episode else None,
                "elapsed_s": round(self.clock.now() - self._episode_start, 1) if self._episode_id else 0.0,
                "paused": self._paused,
                "subtask": active.text if active else None,
                "segments": [s.__dict__.copy() for s in self._segments],
                "loop_hz": round((len(ticks) - 1) / (ticks[-1] - ticks[0]), 1) if len(ticks) > 2 else 0.0,
                "last_tick_age_s": round(time.monotonic() - self._last_tick, 2) if self._last_tick else None,
                "target_hz": self.description.control_hz,
                "tick_ms_p95": round(float(np.percentile(self._tick_ms, 95)), 1) if self._tick_ms else None,
                "vla_rtt_ms": self._rtt_ms,
                "vla_error": self._vla_error,
                "vla_note": self._vla_note,
                "recorder": self.recorder.stats.to_dict(),
                "errors": list(self._errors[-3:]),
            }

    # -- the control loop -------------------------------------------------------------------
    def _run(self) -> None:
        raise_priority(LOOP_NICE)
        loop = _Loop(ActionChunker(self.policy, self._chunking))
        try:
            self._publish(self.robot.reset(*self._idle_scene) if self._idle_scene else self.robot.observe())
        except Exception as e:  # reported by start(), in the caller's thread
            self._startup_error = e
            self._ready.set()
            return
        self._ready.set()
        period = 1.0 / self.description.control_hz
        next_tick = self.clock.now()
        try:
            while self._running.is_set():
                try:
                    self._tick(loop)
                except Exception as e:  # a robot, VLA or recorder failure must not end the loop
                    self._report(f"The control loop hit an error and holds the robot: {type(e).__name__}: {e}")
                    loop.chunker.new_subtask()
                    try:
                        self.robot.hold()
                    except Exception:
                        pass
                next_tick += period
                if next_tick < self.clock.now() - period:  # fell far behind: do not try to catch up
                    next_tick = self.clock.now()
                self.clock.sleep_until(next_tick)
        finally:
            loop.chunker.close()
            self.robot.close()  # here, on the thread whose GL context the renderer holds

    def _tick(self, loop: _Loop) -> None:
        started = time.monotonic()
        while not self._commands.empty():
            self._commands.get()(loop)
        obs = self.robot.observe()
        self._publish(obs)
        action = None
        if loop.subtask is not None and not loop.paused:
            action = loop.chunker.step(obs.to_dict(), loop.prompt)
            self._rtt_ms = loop.chunker.last_round_trip_ms
            self._vla_error = str(loop.chunker.last_error) if loop.chunker.last_error else None
            info = loop.chunker.last_info
            self._vla_note = info.get("reason") if info.get("refused") else None
            if action is not None and loop.subtask.first_action_wall is None:
                loop.subtask.first_action_wall = time.time()
        if action is not None and len(action) != self.description.action_dim(loop.mode):
            self._report(f"The VLA sent {len(action)}-d actions; this robot takes "
                         f"{self.description.action_dim(loop.mode)} in {loop.mode} mode. Holding.")
            loop.chunker.new_subtask()
            action = None
        if action is None:
            self.robot.hold()  # nothing to do, paused, stopped or the VLA is late: keep still
        else:
            self.robot.act(action, loop.mode)
        if self._episode_id is not None:
            try:
                self.recorder.record_step(self.clock.now() - self._episode_start, obs.state, action, obs.images)
            except (RecorderOverflow, RecorderFailed, StorageError, ValueError) as e:
                self._report(str(e))
        self._last_tick = time.monotonic()
        with self._lock:
            self._tick_times.append(started)
            self._tick_ms.append((time.monotonic() - started) * 1e3)
            del self._tick_times[:-100], self._tick_ms[:-100]

    def _publish(self, obs: Observation) -> None:
        with self._frame_ready:
            seq = self._frame.seq + 1 if self._frame else 1
            frame = self._frame = Frame(seq, time.time(), obs.images)
            self._observation = obs
            self._frame_ready.notify_all()
            listeners = list(self._frame_listeners)
        for listener in listeners:
            try:
                listener(frame)
            except Exception:  # a viewer going away (its event loop closed) is not the loop's problem
                pass

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
