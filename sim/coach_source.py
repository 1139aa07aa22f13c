"""The scripted coach as a subtask source: what `coachlab coach` and the benches' coached episodes run.

It hands the coach the sim's privileged state (only the sim may read it) every tick and turns
its commands into `SubtaskCommand`s; the coach judges each subtask when it chooses the next,
so a segment ends as success or failure, as a person's marks would say.
"""

from __future__ import annotations

from typing import Any

from coaching.robot import Observation
from coaching.settings import EpisodeSettings
from coaching.subtask_source import SubtaskCommand, SubtaskSource
from sim.coach import CoachConfig, ScriptedCoach
from sim.tasks import TaskFamily

SCRIPTED_COACH_USER = "scripted-coach"


class ScriptedCoachSource(SubtaskSource):
    user = SCRIPTED_COACH_USER

    def __init__(self, family: TaskFamily, config: CoachConfig, seed: int):
        self.family, self.config, self.seed = family, config, seed
        self.reset()

    def reset(self) -> None:
        self.coach = ScriptedCoach(self.family, self.config, self.seed)

    def settings(self) -> EpisodeSettings:
        """The episode this coach coaches: its task family and seed, tagged as a person would tag it
        (the expert: quality 5, no mistakes; the sloppy coach: quality 2, with mistakes)."""
        expert = self.config.profile == "expert"
        return EpisodeSettings(task=self.family.description, task_family=self.family.name, seed=self.seed,
                               quality=5 if expert else 2, mistake=not expert, coach=f"scripted-{self.config.profile}")

    def next(self, observation: Observation, status: dict[str, Any]) -> SubtaskCommand | None:
        cmd = self.coach.decide(observation.env_state, status["episode_time_s"])
        if cmd is None:
            return None
        sent, judged = len(status["segments"]), self.coach.outcomes
        closes_as = judged[sent - 1][1] if 0 < sent <= len(judged) else None
        if cmd.kind == "end":
            return SubtaskCommand("end", outcome=cmd.outcome, closes_as=closes_as)
        return SubtaskCommand("subtask", cmd.text, source=cmd.source, mistake=cmd.mistake, closes_as=closes_as)
