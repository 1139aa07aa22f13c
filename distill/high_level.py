"""The high-level policy seam: `(observation, task, subtask history, metadata) -> next subtask | done`.

The autonomous driver (`distill/autonomous.py`) asks a `HighLevelPolicy` what to do next about
once a second and re-prompts the low-level VLA when a new answer has won a few decisions in a row
(`Hysteresis`); so does the app's runner (`coaching/autonomous_runner.py`). Implementations: the
learned policy distilled from coaching logs (`distill/model.py`); anything else a lab trains
can plug in by implementing `decide`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DONE = "done"
# A subtask still active after this long counts as refused: the VLA is stuck on it (an item it
# cannot reach, one already put away), so the policy's next choice runs instead. Coached segments
# last 2.5 s at the median and under 5 s in nine cases out of ten.
SUBTASK_TIMEOUT_S = 20.0


@dataclass
class Decision:
    subtask: str  # the next subtask text, or DONE
    confidence: float  # the policy's probability for it, 0..1
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # the runners-up, best first

    @property
    def done(self) -> bool:
        return self.subtask == DONE


@dataclass
class Hysteresis:
    """Whether a decision should replace the active subtask: a different subtask must win `needed`
    decisions in a row (the first subtask of an episode is taken at once). Shared by `coachlab play`
    (`distill/autonomous.py`) and the app's runner (`coaching/autonomous_runner.py`), so both switch alike."""

    needed: int = 2
    candidate: str | None = None
    streak: int = 0

    def switch(self, decision: Decision, active: str | None) -> bool:
        if decision.subtask == active:
            self.reset()
            return False
        self.streak = self.streak + 1 if decision.subtask == self.candidate else 1
        self.candidate = decision.subtask
        if self.streak >= self.needed or active is None:
            self.reset()
            return True
        return False

    def reset(self) -> None:
        self.candidate, self.streak = None, 0


def without_refused(decision: Decision, refused: set[str], policy: "HighLevelPolicy | None" = None) -> Decision:
    """The decision, or else its best runner-up that is no phrasing of a subtask the low-level policy
    just refused (since a subtask last ran: a refusal such as "not holding anything" may not last).

    A VLA that reports a refusal (`info["refused"]`, e.g. the object named is not in the scene)
    tells the driver more than the cameras at 64 pixels do; the high-level policy's next choice is
    tried instead of holding on to an instruction that will never run."""
    same = policy.same_subtask if policy is not None else (lambda a, b: a == b)
    ranked = [(decision.subtask, decision.confidence), *decision.alternatives]
    allowed = [(t, p) for t, p in ranked if not any(same(t, r) for r in refused)]
    if not allowed or allowed[0][0] == decision.subtask:
        return decision
    return Decision(allowed[0][0], allowed[0][1], allowed[1:])


class HighLevelPolicy(abc.ABC):
    checkpoint_id: int | None = None  # the storage id of the checkpoint, where it is registered

    def same_subtask(self, a: str, b: str) -> bool:
        """Whether two phrasings name the same subtask to this policy (by default: the same text)."""
        return a == b

    @abc.abstractmethod
    def decide(self, images: dict[str, np.ndarray], state: np.ndarray, task: str, history: list[str],
               metadata: dict[str, Any] | None = None) -> Decision:
        """The subtask to run now given the cameras, proprio state, task text and the subtasks so far."""
