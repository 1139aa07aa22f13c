"""The episode's timeline as the session keeps it in memory: one `SegmentView` per subtask sent.

The database holds the same segments (storage's recorder writes them at once); this is what the
page, the subtask sources and the episode report read without a query.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SegmentView:
    """What the timeline shows of one subtask."""

    id: int  # the segment's id in storage (or the session's own count when nothing is recorded)
    number: int  # its place in the episode, from 0
    text: str
    source: str  # coach | correction | policy
    issued_s: float  # episode time it was sent
    user: str
    with_subgoals: bool = False
    first_action_wall: float | None = None  # time.time() when its first action reached the robot
    issued_wall: float = 0.0
    end_s: float | None = None
    outcome: str | None = None
    mistake: bool = False
    confidence: float | None = None  # a policy's probability for its subtask

    @property
    def active(self) -> bool:
        return self.end_s is None
