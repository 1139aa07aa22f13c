"""What the active subtask is doing, in words any robot and VLA can give: running, idle, refused,
failed, paused, stopped (`SubtaskStatus`), and the outcome a segment closes with when the coach
sends the next one (`closing_outcome`).

No VLA says when a subtask is done, so "idle" is read from the robot's proprio state: the arm
moved during the segment and has held still for `IDLE_AFTER_S` since (likely done). A VLA that
refuses the continued request after it had taken the subtask on ("I'm not holding anything" once
the can is in the bin) has nothing more to do, which is idle too; a subtask whose first reply was
a refusal is refused. A pause drops the chunk, so the arm is still after a resume until the VLA's
next reply moves it: stillness counts again only from that reply (else the page said "likely done"
for a moment after every resume, and a coach who sent the next subtask then had it refused).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

IDLE_AFTER_S = 0.4  # still for this long after moving: idle (the page polls twice a second)
# How far any proprio value (rad, m) must get from where it last rested to count as moving: a held
# item makes a joint jitter by ~1e-3 while the arm holds still.
MOVE_THRESHOLD = 0.01


@dataclass
class SubtaskStatus:
    """The active subtask as the page shows it."""

    status: str  # running | idle | refused | failed | paused | stopped | waiting
    reason: str | None = None  # the VLA's words for a refusal or failure


class Activity:
    """Per segment: did the arm move, and since when has it held still. Fed on the loop's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._segment: int | None = None
        self._anchor: np.ndarray | None = None  # the proprio state where the arm last rested
        self._moved = False
        self._last_move = 0.0
        self._last_move_wall: float | None = None  # time.time() of that move: what `bench ui` times idle from
        self._accepted = False  # the VLA took the segment on (a reply that was no refusal)
        self._awaiting_reply = False  # resumed after a pause; no reply to the segment since

    def observe(self, state: np.ndarray, segment_id: int | None, now: float, reply: dict | None = None) -> None:
        """One tick: the proprio `state`, the active segment and the VLA's latest reply (`ControlLoop.vla_reply`)."""
        state = np.asarray(state, dtype=np.float64)
        with self._lock:
            if segment_id != self._segment:
                self._segment, self._moved, self._last_move, self._accepted = segment_id, False, now, False
                self._last_move_wall, self._awaiting_reply = None, False
            replied = segment_id is not None and reply and reply.get("vla_segment") == segment_id and reply.get("vla_replied")
            if replied and not reply.get("vla_refused") and not reply.get("vla_error"):
                self._accepted = True
            if replied and self._awaiting_reply:
                self._awaiting_reply, self._last_move = False, now
            anchor = self._anchor
            if anchor is None or anchor.shape != state.shape:
                self._anchor = state
            elif float(np.max(np.abs(state - anchor))) > MOVE_THRESHOLD:
                self._anchor = state
                if segment_id is not None:
                    self._moved, self._last_move, self._last_move_wall = True, now, time.time()

    def resumed(self, now: float) -> None:
        """The loop resumed after a pause (call on the loop's thread, before the tick's reply is
        read): idle again only once the VLA has replied and the arm has then held still."""
        with self._lock:
            self._awaiting_reply, self._last_move = True, now

    def of(self, segment_id: int, now: float) -> tuple[bool, bool]:
        """(accepted, idle) of `segment_id`: whether the VLA took it on, and whether the arm worked on it
        and has held still since."""
        with self._lock:
            if segment_id != self._segment:
                return False, False
            return self._accepted, self._moved and not self._awaiting_reply and now - self._last_move >= IDLE_AFTER_S

    def last_move_wall(self, segment_id: int) -> float | None:
        """When (time.time()) the arm last moved for `segment_id`; None if it has not moved for it."""
        with self._lock:
            return self._last_move_wall if segment_id == self._segment else None


def subtask_status(accepted: bool, idle: bool, paused: bool, refused: bool, note: str | None,
                   error: str | None) -> SubtaskStatus:
    """The active segment's status from the arm's motion and the VLA's latest reply to it."""
    if paused:
        return SubtaskStatus("paused")
    if error:
        return SubtaskStatus("failed", error)
    if refused and not accepted:
        return SubtaskStatus("refused", note)
    if refused or idle:
        return SubtaskStatus("idle", note)
    return SubtaskStatus("running")


def closing_outcome(status: SubtaskStatus) -> str:
    """How a segment a new subtask replaces is logged: completed (the arm worked and stopped on its
    own, not a judgement of success), refused, failure (the VLA failed), or replaced (cut off while running)."""
    return {"idle": "completed", "refused": "refused", "failed": "failure"}.get(status.status, "replaced")
