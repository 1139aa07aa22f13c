"""The subgoal generator seam: `(observation, subtask) -> {camera: image}` of what the subtask should achieve.

Implementations: the sim's lookahead (`sim.lookahead.SimLookahead`, runs the subtask in a copy of
the simulation) and a model learned from the logs (`distill.learned_subgoals.LearnedSubgoals`,
trained by `coachlab distill-subgoals`; the only kind a real robot can use). `make_subgoal_generator` picks one from the app's `--subgoals` option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

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


def make_subgoal_generator(spec: str, policy: Any) -> SubgoalGenerator | None:
    """`sim` (lookahead with the same low-level policy), `none`, or `learned:DIR` (a subgoal model checkpoint).

    A bad checkpoint directory raises `distill.dataset.DistillError` with one sentence."""
    if spec == "none":
        return None
    if spec == "sim":
        from sim.lookahead import SimLookahead

        return SimLookahead(policy)
    if spec.startswith("learned:"):
        from distill.learned_subgoals import LearnedSubgoals

        directory = spec[len("learned:"):].strip()
        if not directory:
            raise ValueError("--subgoals learned: needs a directory, e.g. learned:runs/subgoals (the --out of "
                             "coachlab distill-subgoals).")
        return LearnedSubgoals.load(directory)
    raise ValueError(f"--subgoals {spec!r} is not understood; use sim, none or learned:DIR.")
