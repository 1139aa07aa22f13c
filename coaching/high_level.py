"""The high-level policy seam: `decide(observation, detections, task, history, metadata) -> Decision`.

A `HighLevelPolicy` says which subtask comes next (or `done`) from what a real robot has: the
cameras and proprio state of an `Observation` (never its privileged `env_state`), the objects
the `Detector` sees, the task text, the subtasks so far and the episode metadata. The autonomy
driver (`coaching/autonomy.py`) asks it about once a second. Implementations: the learned policy
distilled from coaching logs (`distill/`); anything a lab trains plugs in by implementing `decide`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from coaching.detector import Detection
from coaching.robot import Observation

DONE = "done"


@dataclass
class Decision:
    subtask: str  # the next subtask text, or DONE
    confidence: float  # the policy's probability for it, 0..1
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # the runners-up, best first
    # the active subtask again as a fresh attempt: the last one ended without doing it (a missed grasp)
    retry: bool = False

    @property
    def done(self) -> bool:
        return self.subtask == DONE


class HighLevelPolicy(abc.ABC):
    checkpoint_id: int | None = None  # the storage id of the checkpoint, where it is registered

    def reset(self) -> None:
        """Called at the start of every episode by the autonomy driver; by default nothing."""

    def same_subtask(self, a: str, b: str) -> bool:
        """Whether two phrasings name the same subtask to this policy (by default: the same text)."""
        return a == b

    @abc.abstractmethod
    def decide(self, observation: Observation, detections: list[Detection], task: str, history: list[str],
               metadata: dict[str, Any] | None = None) -> Decision:
        """The subtask to run now (or `DONE`) given the robot's cameras and proprio state
        (`observation.images`, `observation.state`), what the detector sees, the task text, the
        subtasks so far (oldest first) and the episode metadata."""
