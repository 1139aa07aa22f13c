"""Baselines a distilled high-level policy is measured against."""

from __future__ import annotations

from typing import Any

from coaching.detector import Detection
from coaching.high_level import Decision, HighLevelPolicy
from coaching.robot import Observation


class TaskTextPolicy(HighLevelPolicy):
    """No high level at all: the low-level policy gets the whole task text as its one subtask."""

    def decide(self, observation: Observation, detections: list[Detection], task: str, history: list[str],
               metadata: dict[str, Any] | None = None) -> Decision:
        return Decision(task, 1.0)
