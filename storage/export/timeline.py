"""One episode's steps on the dataset's frame clock: which recorded step each output frame shows,
its action (held steps filled and masked) and the segment (subtask) active then.

Rules, stated once:
- resampling: frame k is at k/fps seconds after the episode's first step and shows the latest step
  recorded at or before then (sample and hold), so a 20 Hz recording exported at 10 fps keeps every
  other step and one exported at 20 fps from 10 Hz shows each step twice;
- held steps (the robot held still: no action sent) get the last action sent before them (the target
  it was holding), or the first one sent after them at the episode's start, and `held` is True;
- a frame whose step has a damaged camera image is dropped (every camera and the row, so the videos
  stay in step with the data) and later frames move up one; the caller reports which it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-6  # loop clocks are sums of floats: 0.1 * 3 is 0.30000000000000004


@dataclass
class EpisodeFrames:
    """Per output frame (N of them): the step shown, its state (N x S), action (N x A), whether the
    robot held (N), the segment id active (N, -1 before the first subtask)."""

    step_index: np.ndarray
    state: np.ndarray
    action: np.ndarray
    held: np.ndarray
    segment_id: np.ndarray

    def __len__(self) -> int:
        return len(self.step_index)

    def without(self, rows: np.ndarray) -> "EpisodeFrames":
        """These frames less those where `rows` (bool, N) is True."""
        keep = ~rows
        return EpisodeFrames(self.step_index[keep], self.state[keep], self.action[keep], self.held[keep],
                             self.segment_id[keep])


def fill_held(action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(actions with NaN rows filled as above, held mask). `action` is N x A with NaN rows where the
    robot held; an episode that never acted gets zeros (all held)."""
    held = ~np.isfinite(action).all(axis=1) if action.size else np.ones(len(action), dtype=bool)
    filled = action.astype(np.float64, copy=True)
    acted = np.flatnonzero(~held)
    if len(acted) == 0:
        return np.zeros_like(filled), np.ones(len(action), dtype=bool)
    # index of the last acted row at or before each row; before the first, the first one
    last = np.maximum.accumulate(np.where(~held, np.arange(len(action)), -1))
    last[last < 0] = acted[0]
    return filled[last], held


def resample(t: np.ndarray, state: np.ndarray, action: np.ndarray, segment_id: np.ndarray,
             index: np.ndarray, fps: int) -> EpisodeFrames:
    """Frames at `fps` for steps at loop times `t` (seconds, increasing). Raises ValueError on a
    ragged state or action (an episode whose widths changed mid-way)."""
    if state.dtype == object or action.dtype == object:
        raise ValueError("its state or action width changes between steps")
    filled, held = fill_held(action)
    span = float(t[-1] - t[0]) if len(t) else 0.0
    n = int(np.floor(span * fps + _EPS)) + 1 if len(t) else 0
    times = t[0] + np.arange(n) / fps if n else np.zeros(0)
    pick = np.searchsorted(t, times + _EPS, side="right") - 1
    pick = np.clip(pick, 0, max(len(t) - 1, 0))
    return EpisodeFrames(step_index=index[pick].astype(np.int64), state=state[pick].astype(np.float32),
                         action=filled[pick].astype(np.float32), held=held[pick], segment_id=segment_id[pick])
