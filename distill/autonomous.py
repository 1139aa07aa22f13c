"""The autonomous driver: a high-level policy is the subtask source of the same control loop.

Every `1 / decide_hz` seconds the policy looks at the cameras, the task and the subtasks so far
and names the next subtask; the VLA is re-prompted only when a *different* subtask has won
`hysteresis` decisions in a row, so a policy torn between two answers does not flap; a subtask the
VLA refuses (`info["refused"]`), or is stuck on (still active after `subtask_timeout_s`, or the
robot still for `still_s`), is replaced by the policy's next choice at once and kept out of the
choices as `coaching.high_level.Exclusions` says. It stops on a `done` the policy is at least
`done_confidence` sure of, or at the time limit. With an intervener (`--intervene scripted`), a
person stand-in takes over when the policy stalls or says done too early: its subtasks are logged
as corrections, so the next distillation learns from them (YAY Robot's loop), and control returns
to the policy after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coaching.clock import SimClock
from coaching.high_level import (DONE_CONFIDENCE, EXCLUSION_S, STILL_S, SUBTASK_TIMEOUT_S, Exclusions, HighLevelPolicy,
                                Hysteresis, StuckWatch, without_refused)
from policy_client import ActionChunker, BasePolicy, ChunkingConfig
from sim import tasks
from sim.coach import CoachConfig, ScriptedCoach
from coaching.robot import Robot

if TYPE_CHECKING:
    from storage.recorder import Recorder

PLAY_USER = "autonomous"


@dataclass
class PlayConfig:
    decide_hz: float = 1.0
    hysteresis: int = 2  # decisions in a row a new subtask must win before the VLA is re-prompted
    max_episode_s: float = 300.0
    intervene: str | None = None  # "scripted": the scripted coach corrects stalls and early `done`s
    stall_s: float = 12.0  # no task progress for this long counts as stalled (the intervener's test)
    subtask_timeout_s: float = SUBTASK_TIMEOUT_S  # the policy's own: one subtask active this long is dropped
    still_s: float = STILL_S  # the robot held still this long on an active subtask: dropped as stuck
    exclusion_s: float = EXCLUSION_S  # how long a subtask refused at once, or stuck on, stays out of the choices
    done_confidence: float = DONE_CONFIDENCE  # `done` below this is passed over for the runner-up
    chunking: ChunkingConfig = field(default_factory=lambda: ChunkingConfig(replan_after=5))


@dataclass
class PlayedSegment:
    text: str
    source: str  # policy | correction
    start_s: float
    confidence: float | None = None


@dataclass
class PlayReport:
    task: str
    seed: int
    success: bool
    duration_s: float
    subtasks_completed: int  # task steps achieved, as CALVIN's average length counts them
    interventions: int
    segments: list[PlayedSegment]
    episode_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (v if k != "segments" else [s.__dict__ for s in v]) for k, v in self.__dict__.items()}


class ScriptedIntervener:
    """A person stand-in for the sim: it knows the task's remaining steps (privileged, sim only)."""

    def __init__(self, family: tasks.TaskFamily, seed: int):
        self.family = family
        self._phraser = ScriptedCoach(family, CoachConfig(profile="expert"), seed)
        self.step: tasks.Step | None = None
        self.started = 0.0

    def take_over(self, env: dict, now: float) -> str | None:
        steps = self.family.remaining_steps(env)
        if not steps:
            return None
        self.step, self.started = steps[0], now
        return self._phraser.phrase(self.step)

    def finished(self, env: dict, now: float, timeout_s: float) -> bool:
        return self.step is None or tasks.step_done(self.step, env) or now - self.started > timeout_s


def play_episode(robot: Robot, low_level: BasePolicy, policy: HighLevelPolicy, family_name: str, seed: int,
                 config: PlayConfig | None = None, recorder: Recorder | None = None,
                 metadata: dict[str, Any] | None = None) -> PlayReport:
    config = config or PlayConfig()
    family = tasks.get_family(family_name)
    low_level.reset()
    policy.reset()
    obs = robot.reset(family_name, seed)
    clock = SimClock(lambda: obs.timestamp)
    task_text = family.task_text(obs.env_state)
    mode = "ee"
    chunker = ActionChunker(low_level, config.chunking)
    intervener = ScriptedIntervener(family, seed) if config.intervene == "scripted" else None
    segments: list[PlayedSegment] = []
    seg_ids: list[int] = []
    hysteresis, next_decision = Hysteresis(config.hysteresis), 0.0
    segment_ran = False
    exclusions = Exclusions(config.exclusion_s)  # what the VLA refused or got stuck on
    stuck_watch = StuckWatch(config.subtask_timeout_s, config.still_s)
    never_ran: set[int] = set()  # segments refused on their first reply: not part of the history
    correcting = False
    initial_left = left = len(family.remaining_steps(obs.env_state))
    last_progress = 0.0
    if recorder is not None:
        recorder.start_episode(task_text, robot.describe().to_dict(), mode="autonomous", user=PLAY_USER, seed=seed,
                               metadata=metadata, family=family_name, vla_hello=low_level.metadata,
                               policy_checkpoint_id=policy.checkpoint_id)

    def switch(text: str, source: str, confidence: float | None) -> None:
        now = clock.now()
        nonlocal segment_ran
        segments.append(PlayedSegment(text, source, round(now, 2), confidence))
        segment_ran = False
        chunker.new_subtask()
        if recorder is not None:
            if seg_ids:
                recorder.end_segment(seg_ids[-1], None)
            seg_ids.append(recorder.start_segment(text, source, now, user=PLAY_USER if source == "policy" else "scripted-coach",
                                                  info={"confidence": confidence} if confidence is not None else None))

    try:
        done = False
        while clock.now() < config.max_episode_s and not done:
            now = clock.now()
            env = obs.env_state  # evaluation and the intervener only: the policy sees cameras and state
            remaining = len(family.remaining_steps(env))
            if remaining < left:
                left, last_progress = remaining, now
            if correcting and intervener.finished(env, now, config.stall_s):
                correcting = False
                hysteresis.reset()
            stalled = segments and now - last_progress > config.stall_s
            if intervener is not None and not correcting and (stalled or (segments and segments[-1].text == "done")):
                text = intervener.take_over(env, now)
                if text is None:
                    break
                switch(text, "correction", None)
                correcting, last_progress = True, now
            active = segments[-1].text if segments else None
            stuck = active and stuck_watch.stuck(obs.state, now, segments[-1].start_s)
            if not correcting and stuck and active not in exclusions.current(now):
                exclusions.stuck(active, now)  # let the policy's next choice run
                next_decision = now
            if not correcting and now >= next_decision:
                next_decision = now + 1.0 / config.decide_hz
                history = [s.text for i, s in enumerate(segments) if i not in never_ran]
                excluded = exclusions.current(now)
                decision = without_refused(policy.decide(obs.images, obs.state, task_text, history, metadata),
                                           excluded, policy, config.done_confidence)
                if (active in excluded and not decision.done) or hysteresis.switch(decision, active):
                    if decision.done:
                        if intervener is None or family.success(env):
                            done = True
                            break
                        segments.append(PlayedSegment("done", "policy", round(now, 2), decision.confidence))
                    else:
                        switch(decision.subtask, "policy", decision.confidence)
            action = None
            active = segments[-1].text if segments else None
            if active and active != "done":
                prompt = {"task": task_text, "subtask": active, "control_mode": mode,
                          "episode": f"play-{seed}", "segment": len(segments) - 1}
                action = chunker.step(obs.to_dict(), prompt)
                if chunker.last_error is not None:
                    raise chunker.last_error
                if chunker.last_info.get("refused"):
                    if active not in exclusions.current(now):
                        exclusions.refused(active, now, ran=segment_ran)
                        next_decision = now  # choose again at once instead of holding
                        if not segment_ran:
                            never_ran.add(len(segments) - 1)
                elif chunker.last_info:
                    # It runs; a subtask that ran stays in the history even if refused later.
                    segment_ran = True
                    exclusions.running()
            robot.hold() if action is None else robot.act(action, mode)
            if recorder is not None:
                recorder.record_step(now, obs.state, action, obs.images, wait_s=60.0)
            obs = robot.observe()
    except BaseException:
        if recorder is not None and recorder.episode_id is not None:  # keep what was logged, marked as cut short
            if seg_ids:
                recorder.end_segment(seg_ids[-1], None)
            recorder.end_episode("aborted")
        raise
    finally:
        chunker.close()
    success = family.success(obs.env_state)
    interventions = sum(s.source == "correction" for s in segments)
    episode_id = None
    if recorder is not None:
        if seg_ids:
            recorder.end_segment(seg_ids[-1], None)
        episode_id = recorder.end_episode("success" if success else "failure",
                                          {"notes": f"{interventions} interventions"} if interventions else None,
                                          mode="mixed" if interventions else None)
    return PlayReport(family_name, seed, success, round(clock.now(), 2),
                      initial_left - len(family.remaining_steps(obs.env_state)), interventions,
                      [s for s in segments if s.text != "done"], episode_id)
