"""Scripted coaching runs: many seeded episodes of the scripted coach, summarised per task.

This is what `coachlab coach` runs; the per-task summary is the figure the sim issue asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
from tqdm import tqdm

from coaching.scripted_episode import EpisodeReport, run_episode
from policy_client import BasePolicy
from sim.coach import CoachConfig, ScriptedCoach
from coaching.robot import Robot
from sim.tasks import get_family

if TYPE_CHECKING:
    from storage.recorder import Recorder


@dataclass
class CoachingRun:
    tasks: list[str]
    episodes: int
    seed: int = 0
    profile: str = "expert"


def run(robot: Robot, policy: BasePolicy, spec: CoachingRun, recorder: Recorder | None = None,
        progress: bool = True) -> dict[str, list[EpisodeReport]]:
    reports: dict[str, list[EpisodeReport]] = {t: [] for t in spec.tasks}
    jobs = [(t, spec.seed + k) for t in spec.tasks for k in range(spec.episodes)]
    for task, seed in tqdm(jobs, desc="coaching", unit="episode", disable=not progress):
        coach = ScriptedCoach(get_family(task), CoachConfig(profile=spec.profile), seed)
        report = run_episode(robot, policy, coach, task, seed, recorder=recorder)
        reports[task].append(report)
    return reports


def summarise(reports: dict[str, Iterable[EpisodeReport]]) -> dict[str, Any]:
    out = {}
    for task, eps in reports.items():
        eps = list(eps)
        out[task] = {
            "episodes": len(eps),
            "success_rate": round(float(np.mean([e.success for e in eps])), 3),
            "mean_subtasks_completed": round(float(np.mean([e.subtasks_completed for e in eps])), 2),
            "mean_episode_s": round(float(np.mean([e.duration_s for e in eps])), 1),
            "max_episode_s": round(float(np.max([e.duration_s for e in eps])), 1),
            "corrections": int(sum(e.corrections for e in eps)),
        }
    return {"tasks": out}
