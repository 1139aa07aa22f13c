"""One episode driven by a subtask source (here the scripted coach): the control loop in one screen.

observe -> the coach may send a new subtask (a new segment; the action queue is cleared) -> when
the queue runs low, ask the low-level policy for a chunk -> act (or hold) -> repeat, until the
coach ends the episode. Time comes from one clock, so the sim runs faster than real time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from coaching.action_queue import ActionQueue
from coaching.clock import SimClock
from sim.coach import CoachCommand, ScriptedCoach
from sim.robot import Robot


class LowLevelPolicy(Protocol):
    def infer(self, observation: dict[str, Any], prompt: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class Segment:
    index: int
    text: str
    source: str
    mistake: bool
    start_s: float
    end_s: float | None = None
    outcome: str | None = None
    interpretation: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpisodeReport:
    task: str
    seed: int
    success: bool
    duration_s: float
    subtasks_completed: int
    corrections: int
    metadata: dict[str, Any]
    segments: list[Segment]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_episode(robot: Robot, policy: LowLevelPolicy, coach: ScriptedCoach, task: str, seed: int,
                replan_after: int = 5) -> EpisodeReport:
    obs = robot.reset(task, seed)
    clock = SimClock(lambda: obs.timestamp)  # obs is rebound every step; the closure sees the latest
    mode = coach.metadata["control_mode"]
    task_text = coach.family.task_text(obs.env_state)
    queue, segments = ActionQueue(replan_after), []
    end: CoachCommand | None = None
    while end is None:
        now = clock.now()
        cmd = coach.decide(obs.env_state, now)
        if cmd is not None and cmd.kind == "end":
            end = cmd
            break
        if cmd is not None:
            if segments:
                segments[-1].end_s = now
            segments.append(Segment(len(segments), cmd.text, cmd.source, cmd.mistake, now))
            queue.clear()
        if segments and queue.needs_chunk():
            prompt = {"task": task_text, "subtask": segments[-1].text, "control_mode": mode,
                      "metadata": coach.metadata, "episode": seed, "segment": len(segments) - 1}
            reply = policy.infer(obs.to_dict(), prompt)
            queue.load(reply["actions"])
            segments[-1].interpretation = reply.get("info", {})
        action = queue.pop()
        if action is None:
            robot.hold()  # no chunk yet: the safe default is to keep still
        else:
            robot.act(action, mode)
        obs = robot.observe()
    if segments:
        segments[-1].end_s = clock.now()
    for seg, (_, outcome) in zip(segments, coach.outcomes):
        seg.outcome = outcome
    return EpisodeReport(
        task=task, seed=seed, success=end.outcome == "success", duration_s=round(clock.now(), 2),
        subtasks_completed=sum(o == "success" for _, o in coach.outcomes),
        corrections=sum(s.source == "correction" for s in segments),
        metadata=coach.metadata, segments=segments,
    )
