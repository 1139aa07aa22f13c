"""The `SubtaskSource` seam: whoever says the next subtask (DESIGN.md).

A source looks at the latest observation and the session's status and answers with a
`SubtaskCommand`, or None to leave things as they are. Sources: a person (the app's session
commands, typed in the browser), the autonomy driver around a `HighLevelPolicy`
(`coaching/autonomy.py`), the sim's scripted coach (`sim/coach_source.py`). A stepped episode
(`coaching/episode.py`) asks its source once every control tick, between observing and asking the
VLA; the app's runner asks the autonomy driver from its own thread.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from coaching.robot import Observation

COMMANDS = ("subtask", "end", "take_over", "hand_back")


@dataclass(frozen=True)
class SubtaskCommand:
    """What a subtask source does now.

    - `subtask`: run `text` (a new segment from `source`); the active one ends as `closes_as`
      when the source judged it (success | failure), else as what it was doing
      (completed, refused, replaced: `coaching/activity.py`).
    - `end`: end the episode as `outcome` (success | failure | aborted), the active segment as `closes_as`.
    - `take_over` / `hand_back`: a person takes an autonomous episode over, or hands it back to
      the policy (the episode stays `mixed`; the person's subtasks are corrections).
    """

    kind: str
    text: str = ""
    source: str = "coach"
    mistake: bool = False
    confidence: float | None = None
    closes_as: str | None = None
    outcome: str | None = None
    note: str | None = None
    user: str | None = None  # who to log it as, when not the source's own user

    def __post_init__(self) -> None:
        if self.kind not in COMMANDS:
            raise ValueError(f"A subtask command is one of {', '.join(COMMANDS)}, not {self.kind!r}.")


class SubtaskSource(abc.ABC):
    user: str = "system"  # who the commands are logged as

    def reset(self) -> None:
        """A new episode starts; forget the last one."""

    @abc.abstractmethod
    def next(self, observation: Observation, status: dict[str, Any]) -> SubtaskCommand | None:
        """The command to carry out now, given the robot's latest observation and
        `CoachingSession.status()` (active subtask, segments, the VLA's last note, elapsed time)."""
