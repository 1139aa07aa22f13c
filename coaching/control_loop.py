"""The one control loop every driver steps: it alone touches the robot and the action chunker.

A tick: apply the queued commands -> observe -> publish the frame to viewers -> `on_observation`
(a stepped episode's subtask source may change the subtask here) -> ask the chunker for an
action (it asks the VLA for a chunk when the queue runs low or the subtask changed) -> act, or
hold when there is none -> hand `(observation, action, segment id)` to `on_step` (the recorder),
so a step is always filed under the segment that produced it.

Two ways to run it, the same tick either way:
- threaded (the app): a real-time thread on the wall clock at the robot's rate; an error in a
  tick is reported and the robot holds, the loop goes on; the chunker prefetches, so a late VLA
  means the robot holds rather than the loop waiting. Other threads talk to it only through
  `submit`, `wait_frame`, `on_frame` and `stats`.
- stepped (`coachlab coach`, `coachlab play`, benches, tests): the caller runs `step()` on a
  simulated clock, which does not advance while the chunker waits for the VLA; errors raise.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from coaching.clock import Clock
from coaching.robot import Observation, Robot
from policy_client import ActionChunker, BasePolicy, ChunkingConfig

LOOP_NICE = -10


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


@dataclass
class Frame:
    seq: int
    wall_time: float  # time.time() when rendered
    images: dict[str, np.ndarray]


@dataclass
class LoopState:
    """What the loop acts on; only the loop thread (and the commands it runs) read and write it."""

    chunker: ActionChunker
    mode: str = "ee"
    subtask: Any = None  # the active segment (anything with `id` and `first_action_wall`), None to hold
    paused: bool = False
    prompt: dict[str, Any] = field(default_factory=dict)


class ControlLoop:
    def __init__(self, robot: Robot, vla: BasePolicy, chunking: ChunkingConfig, clock: Clock,
                 on_step: Callable[[Observation, np.ndarray | None, int | None], None],
                 on_error: Callable[[str], None], idle_reset: tuple[str, int] | None = None, stepped: bool = False):
        self.robot, self.vla, self.clock, self.stepped = robot, vla, clock, stepped
        self.description = robot.describe()
        self._chunking, self._on_step, self._on_error, self._idle_reset = chunking, on_step, on_error, idle_reset
        self.on_observation: Callable[[Observation], None] | None = None
        self._commands: queue.SimpleQueue[Callable[[LoopState], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._frame_ready = threading.Condition(self._lock)
        self._frame: Frame | None = None
        self.observation: Observation | None = None  # the latest, for previews and subtask sources
        self._listeners: list[Callable[[Frame], None]] = []
        self._tick_times: list[float] = []
        self._tick_ms: list[float] = []  # how long each tick's work took: the loop's headroom
        self._last_tick = 0.0
        self._vla: dict[str, Any] = {"vla_rtt_ms": None, "vla_error": None, "vla_note": None, "vla_refused": False,
                                     "vla_segment": None, "vla_replied": False}
        self._state: LoopState | None = None
        self._running = threading.Event()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="control-loop", daemon=True)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> None:
        """Bring the robot up (and, threaded, start the thread); RuntimeError with the reason if it does not."""
        if self.stepped:
            self._state = LoopState(ActionChunker(self.vla, self._chunking))
            if self._idle_reset:
                self.publish(self.robot.reset(*self._idle_reset))
            return
        self._running.set()
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"the robot did not come up within {timeout_s:.0f} s; check the robot connection")
        if self._startup_error is not None:
            raise RuntimeError(str(self._startup_error))

    def stop(self) -> None:
        if self.stepped:
            if self._state is not None:
                self._state.chunker.close()
            self.robot.close()
            return
        self._running.clear()
        self._thread.join(timeout=10)

    def step(self) -> None:
        """Run one tick now (stepped loops only); a robot or VLA failure raises."""
        self._tick(self._state)
        error, self._state.chunker.last_error = self._state.chunker.last_error, None
        if error is not None:
            raise error  # a stepped run cannot go on without its VLA

    # -- what other threads use -------------------------------------------------------------
    def submit(self, command: Callable[[LoopState], None]) -> None:
        """Run `command(state)` on the loop's thread: at the start of the next tick, or at once when
        called from that thread (a stepped loop's caller, or a subtask source inside a tick)."""
        if self.stepped or threading.current_thread() is self._thread:
            command(self._state)  # a stepped loop has one caller, the thread that steps it
        else:
            self._commands.put(command)

    def wait_frame(self, after_seq: int, timeout_s: float = 1.0) -> Frame | None:
        """The newest frame, once it is newer than `after_seq` (or None after the timeout)."""
        with self._frame_ready:
            self._frame_ready.wait_for(lambda: self._frame is not None and self._frame.seq > after_seq, timeout_s)
            return self._frame if self._frame is not None and self._frame.seq > after_seq else None

    def on_frame(self, listener: Callable[[Frame], None]) -> None:
        """Call `listener(frame)` from the loop thread for every new frame; it must return at once."""
        with self._lock:
            self._listeners.append(listener)

    @property
    def vla_reply(self) -> dict[str, Any]:
        """The VLA's latest reply as the loop saw it (segment, refused, note, error), without the stats' cost."""
        return self._vla

    def stats(self) -> dict[str, Any]:
        with self._lock:
            ticks, work = self._tick_times[-50:], self._tick_ms
            return {
                "loop_hz": round((len(ticks) - 1) / (ticks[-1] - ticks[0]), 1) if len(ticks) > 2 else 0.0,
                "target_hz": self.description.control_hz,
                "tick_ms_p95": round(float(np.percentile(work, 95)), 1) if work else None,
                "last_tick_age_s": round(time.monotonic() - self._last_tick, 2) if self._last_tick else None,
                **self._vla,
            }

    # -- the loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        raise_priority(LOOP_NICE)
        state = self._state = LoopState(ActionChunker(self.vla, self._chunking))
        try:
            self.publish(self.robot.reset(*self._idle_reset) if self._idle_reset else self.robot.observe())
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
                    self._tick(state)
                except Exception as e:  # a robot, VLA or recorder failure must not end the loop
                    self._on_error(f"The control loop hit an error and holds the robot: {type(e).__name__}: {e}")
                    state.chunker.new_subtask()
                    try:
                        self.robot.hold()
                    except Exception:
                        pass
                next_tick += period
                if next_tick < self.clock.now() - period:  # fell far behind: do not try to catch up
                    next_tick = self.clock.now()
                self.clock.sleep_until(next_tick)
        finally:
            state.chunker.close()
            self.robot.close()  # here, on the thread whose GL context the renderer holds

    def _tick(self, state: LoopState) -> None:
        started = time.monotonic()
        while not self._commands.empty():
            self._commands.get()(state)
        obs = self.robot.observe()
        self.publish(obs)
        if self.on_observation is not None:
            self.on_observation(obs)
        action = None
        segment = state.subtask
        if segment is not None and not state.paused:
            # every reply is checked against this robot's width in this mode (a wrong one never runs)
            action = state.chunker.step(obs.to_dict(), state.prompt, self.description.action_names.get(state.mode),
                                        state.mode)
            info, error = state.chunker.last_info, state.chunker.last_error
            self._vla = {"vla_rtt_ms": state.chunker.last_round_trip_ms, "vla_error": str(error) if error else None,
                         "vla_note": info.get("reason") if info.get("refused") else None,
                         "vla_refused": bool(info.get("refused")),
                         "vla_segment": segment.id, "vla_replied": bool(info)}
            if action is not None and segment.first_action_wall is None:
                segment.first_action_wall = time.time()
        if action is None:
            self.robot.hold()  # nothing to do, paused, stopped or the VLA is late: keep still
        else:
            self.robot.act(action, state.mode)
        self._on_step(obs, action, segment.id if segment is not None else None)
        self._last_tick = time.monotonic()
        with self._lock:
            self._tick_times.append(started)
            self._tick_ms.append((time.monotonic() - started) * 1e3)
            del self._tick_times[:-100], self._tick_ms[:-100]

    def publish(self, obs: Observation) -> None:
        """Show `obs` to viewers (loop thread only: also from a command, e.g. after a reset)."""
        with self._frame_ready:
            seq = self._frame.seq + 1 if self._frame else 1
            frame = self._frame = Frame(seq, time.time(), obs.images)
            self.observation = obs
            self._frame_ready.notify_all()
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(frame)
            except Exception:  # a viewer going away (its event loop closed) is not the loop's problem
                pass
