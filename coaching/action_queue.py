"""Client-side action chunking: execute a chunk open-loop for a while, then ask for the next.

The queue holds the actions of the latest chunk; when fewer than `replan_after` steps of it have
run it keeps serving them, and it is cleared at once when the subtask changes so no action meant
for an old instruction ever reaches the robot. An empty queue means the robot holds still.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class ActionQueue:
    def __init__(self, replan_after: int = 5):
        self.replan_after = replan_after
        self._queue: deque[np.ndarray] = deque()
        self._served = 0

    def needs_chunk(self) -> bool:
        return not self._queue or self._served >= self.replan_after

    def load(self, chunk: np.ndarray) -> None:
        self._queue = deque(np.asarray(chunk, dtype=np.float32))
        self._served = 0

    def clear(self) -> None:
        self._queue.clear()
        self._served = 0

    def pop(self) -> np.ndarray | None:
        if not self._queue:
            return None
        self._served += 1
        return self._queue.popleft()
