"""A person stand-in that corrects an autonomous episode in the sim (`coachlab play --intervene scripted`).

It wraps the autonomy driver: when the task has made no progress for `stall_s`, or the policy
says done while the task is not, it takes over and sends the task's next step, phrased as the
scripted coach would, as a correction; once that step is done (or timed out) it hands the episode
back to the policy; when the task is done and the policy stalls, it ends the episode. The
corrections are logged, so the next distillation learns from them (YAY Robot's loop). It reads the sim's privileged state, so it exists only in the sim.
"""

from __future__ import annotations

from typing import Any

from coaching.autonomy import AutonomyDriver
from coaching.robot import Observation
from coaching.subtask_source import SubtaskCommand, SubtaskSource
from sim import tasks
from sim.coach import CoachConfig, ScriptedCoach
from sim.coach_source import SCRIPTED_COACH_USER

STALL_S = 12.0  # no task progress for this long counts as stalled


class ScriptedIntervention(SubtaskSource):
    def __init__(self, driver: AutonomyDriver, family: tasks.TaskFamily, seed: int, stall_s: float = STALL_S):
        self.driver, self.family, self.seed, self.stall_s = driver, family, seed, stall_s
        self.user = driver.user
        self.reset()

    def reset(self) -> None:
        self.driver.reset()
        self._phraser = ScriptedCoach(self.family, CoachConfig(profile="expert"), self.seed)
        self._step: tasks.Step | None = None  # the step being corrected, while correcting
        self._started = 0.0
        self._left: int | None = None
        self._last_progress = 0.0

    def next(self, observation: Observation, status: dict[str, Any]) -> SubtaskCommand | None:
        env, now = observation.env_state, status["episode_time_s"]
        if now >= self.driver.config.max_episode_s:  # the time limit holds whoever drives
            return self.driver.next(observation, {**status, "driver": "policy"})
        left = len(self.family.remaining_steps(env))
        if self._left is None or left < self._left:
            self._left, self._last_progress = left, now
        if self._step is not None:
            if tasks.step_done(self._step, env) or now - self._started > self.stall_s:
                self._step = None
                return SubtaskCommand("hand_back", user=SCRIPTED_COACH_USER)
            return None
        if status["segments"] and now - self._last_progress > self.stall_s:
            if self.family.success(env):  # the task is done and the policy does not say so: a person ends it
                return SubtaskCommand("end", outcome="success", note="ended by the coach: the task was done",
                                      user=SCRIPTED_COACH_USER)
            return self._take_over(env, now) or SubtaskCommand(
                "end", outcome="failure", note="ended by the coach: nothing left it could correct", user=SCRIPTED_COACH_USER)
        command = self.driver.next(observation, status)
        if command is not None and command.kind == "end" and not self.family.success(env) \
                and now < self.driver.config.max_episode_s:
            return self._take_over(env, now) or command  # done too early
        return command

    def _take_over(self, env: dict, now: float) -> SubtaskCommand | None:
        steps = self.family.remaining_steps(env)
        if not steps:
            return None
        self._step, self._started, self._last_progress = steps[0], now, now
        return SubtaskCommand("subtask", self._phraser.phrase(self._step), source="correction", user=SCRIPTED_COACH_USER)
