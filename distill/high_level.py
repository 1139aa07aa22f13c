"""The high-level policy seam: `(observation, task, subtask history, metadata) -> next subtask | done`.

The autonomous driver (`distill/autonomous.py`) asks a `HighLevelPolicy` what to do next about
once a second and re-prompts the low-level VLA when the answer changes. Implementations: the
learned policy distilled from coaching logs (`distill/model.py`); anything else a lab trains
can plug in by implementing `decide`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DONE = "done"


@dataclass
class Decision:
    subtask: str  # the next subtask text, or DONE
    confidence: float  # the policy's probability for it, 0..1
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # the runners-up, best first

    @property
    def done(self) -> bool:
        return self.subtask == DONE


class HighLevelPolicy(abc.ABC):
    checkpoint_id: int | None = None  # the storage id of the checkpoint, where it is registered

    @abc.abstractmethod
    def decide(self, images: dict[str, np.ndarray], state: np.ndarray, task: str, history: list[str],
               metadata: dict[str, Any] | None = None) -> Decision:
        """The subtask to run now given the cameras, proprio state, task text and the subtasks so far."""
