"""The subgoal generator seam: `(observation, subtask) -> {camera: image}` of what the subtask should achieve.

Implementations: the sim's lookahead (`sim.lookahead.SimLookahead`, runs the subtask in a copy of
the simulation) and a model learned from the logs (`distill.learned_subgoals.LearnedSubgoals`,
trained by `coachlab distill-subgoals`; the only kind a real robot can use). The app picks one from its
`--subgoals` option (`app/embedded.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from coaching.robot import Observation


class SubgoalResult(Protocol):
    images: dict[str, np.ndarray]
    refused: str | None  # why no subgoal could be made (e.g. the policy refused the text), else None


class SubgoalGenerator(Protocol):
    def generate(self, observation: Observation, subtask: str, task: str = "", control_mode: str = "ee") -> SubgoalResult: ...


@dataclass
class SubgoalPreview:
    """A preview the coach has looked at: the subtask text and one image per camera."""

    text: str
    images: dict[str, np.ndarray]
