"""The one clock the control loop reads time from.

`SimClock` follows the robot's own simulated time, so tests and scripted coaching run faster than
real time; `WallClock` paces a loop to the wall so a person (or real hardware) can keep up.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the clock started."""
        ...

    def sleep_until(self, t: float) -> None: ...


class WallClock:
    def __init__(self) -> None:
        self._start = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._start

    def sleep_until(self, t: float) -> None:
        delay = t - self.now()
        if delay > 0:
            time.sleep(delay)


class SimClock:
    """Reads the robot's timestamp; never sleeps, the sim advances only when the loop acts."""

    def __init__(self, read_time: Callable[[], float]) -> None:
        self._read = read_time

    def now(self) -> float:
        return self._read()

    def sleep_until(self, t: float) -> None:
        return None
