"""One episode driven by a subtask source (here the scripted coach): the control loop in one screen.

observe -> the coach may send a new subtask (a new segment; queued actions are dropped) -> the
chunker hands out the next action, asking the low-level policy (over the wire) for a new chunk when
the current one has run long enough -> act (or hold) -> repeat, until the coach ends the episode.
Time comes from one clock, so the sim runs faster than real time; on that clock the chunker waits
for each reply synchronously, since simulated time does not pass while it waits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from coaching.clock import SimClock
from policy_client import ActionChunker, BasePolicy, ChunkingConfig
from sim.coach import CoachCommand, ScriptedCoach
from coaching.robot import Robot

if TYPE_CHECKING:
    from storage.recorder import Recorder

SCRIPTED_COACH_USER = "scripted-coach"


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
    episode_id: int | None = None  # where it was logged, if it was

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_episode(robot: Robot, policy: BasePolicy, coach: ScriptedCoach, task: str, seed: int,
                chunking: ChunkingConfig | None = None, recorder: Recorder | None = None) -> EpisodeReport:
    """Run one episode; with a `recorder`, log it (episode, segments, every step with its frames)."""
    policy.reset()
    obs = robot.reset(task, seed)
    clock = SimClock(lambda: obs.timestamp)  # obs is rebound every step; the closure sees the latest
    mode = coach.metadata["control_mode"]
    task_text = coach.family.task_text(obs.env_state)
    chunker, segments = ActionChunker(policy, chunking or ChunkingConfig(replan_after=5)), []
    seg_ids: list[int] = []
    if recorder is not None:
        recorder.start_episode(task_text, robot.describe().to_dict(), mode="coached", user=SCRIPTED_COACH_USER,
                               seed=seed, metadata=coach.metadata, family=task, vla_hello=policy.metadata)
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
            chunker.new_subtask()
            if recorder is not None:
                if seg_ids:  # the coach judged the previous subtask when it chose this one
                    recorder.end_segment(seg_ids[-1], _outcome(coach, len(seg_ids) - 1))
                seg_ids.append(recorder.start_segment(cmd.text, cmd.source, now, user=SCRIPTED_COACH_USER,
                                                      mistake=cmd.mistake))
        action = None
        if segments:
            prompt = {"task": task_text, "subtask": segments[-1].text, "control_mode": mode,
                      "metadata": coach.metadata, "episode": seed, "segment": len(segments) - 1}
            action = chunker.step(obs.to_dict(), prompt)
            if chunker.last_error is not None:
                raise chunker.last_error  # a scripted run cannot go on without its low-level policy
            segments[-1].interpretation = chunker.last_info
        if action is None:
            robot.hold()  # no chunk yet: the safe default is to keep still
        else:
            robot.act(action, mode)
        if recorder is not None:  # wait for room rather than drop: simulated time stands still meanwhile
            recorder.record_step(now, obs.state, action, obs.images, wait_s=60.0)
        obs = robot.observe()
    if segments:
        segments[-1].end_s = clock.now()
    for seg, (_, outcome) in zip(segments, coach.outcomes):
        seg.outcome = outcome
    if recorder is not None:
        if seg_ids:
            recorder.end_segment(seg_ids[-1], _outcome(coach, len(seg_ids) - 1))
        episode_id = recorder.end_episode("success" if end.outcome == "success" else "failure")
    return EpisodeReport(
        episode_id=episode_id if recorder is not None else None, task=task, seed=seed, success=end.outcome == "success", duration_s=round(clock.now(), 2),
        subtasks_completed=sum(o == "success" for _, o in coach.outcomes),
        corrections=sum(s.source == "correction" for s in segments),
        metadata=coach.metadata, segments=segments,
    )


def _outcome(coach: ScriptedCoach, index: int) -> str | None:
    return coach.outcomes[index][1] if index < len(coach.outcomes) else None
