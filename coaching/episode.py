"""One episode on a stepped loop, driven by a subtask source, and the report of how it went.

This is what `coachlab coach` (the scripted coach as source), `coachlab play`, the benches and the
Distill tab's Evaluate (the autonomy driver as source) run: the session's one `ControlLoop`,
stepped on the robot's simulated clock, with the source asked once every tick between observing
and asking the VLA (DESIGN.md's tick). Success and the subtasks completed are read from what the
robot reports (`Observation.task_progress`), so nothing here knows which robot it drives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from coaching.session import CoachingSession, EpisodeSettings
from coaching.subtask_source import SubtaskSource


@dataclass
class EpisodeReport:
    """How one episode went, for `coach` and `play` summaries alike."""

    task_family: str
    seed: int
    success: bool  # what the robot reports at the end (else the episode's logged outcome)
    outcome: str  # as logged: success | failure | aborted
    duration_s: float
    subtasks_completed: int  # task steps achieved, as CALVIN's average length counts them (0 if the robot cannot tell)
    corrections: int  # segments a person (or its stand-in) sent as corrections
    segments: list[dict[str, Any]] = field(default_factory=list)  # number, text, source, issued_s, outcome, mistake, confidence
    episode_id: int | None = None  # where it was logged, if it was

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drive_episode(session: CoachingSession, source: SubtaskSource, settings: EpisodeSettings, mode: str = "coached",
                policy_checkpoint_id: int | None = None) -> EpisodeReport:
    """Reset into `settings`, step the loop until the source ends the episode, and report.

    `session` must be stepped (`CoachingSession(..., stepped=True)`). The source should end the
    episode itself (the scripted coach and the autonomy driver both have a time limit). An error
    (a VLA that failed, a robot that failed) ends the episode as aborted, keeping what was logged,
    and raises."""
    if not session.stepped:
        raise ValueError("drive_episode steps the loop itself; give it a stepped session.")
    source.reset()
    episode_id = session.start_episode(settings, source.user, mode=mode, policy_checkpoint_id=policy_checkpoint_id)
    first = session.latest_observation().task_progress or {}

    final: dict[str, Any] = {}

    def ask_source(obs: Any) -> None:
        status = final["status"] = session.status()
        if status["episode_id"] == episode_id:
            command = source.next(obs, status)
            if command is not None:
                session.apply(command, command.user or source.user)

    session.loop.on_observation = ask_source
    try:
        while session.episode_id == episode_id:
            session.loop.step()
    except BaseException:
        if session.episode_id == episode_id:
            session.end_episode("aborted", source.user, notes="the run failed; see the error")
        raise
    finally:
        session.loop.on_observation = None
    last = session.latest_observation().task_progress or {}
    segments = [{k: s[k] for k in ("number", "text", "source", "issued_s", "outcome", "mistake", "confidence")}
                for s in session.status()["segments"]]  # the ended episode's, with their outcomes
    outcome = session.last_outcome
    return EpisodeReport(
        task_family=settings.task_family, seed=settings.seed,
        success=bool(last["success"]) if "success" in last else outcome == "success", outcome=outcome,
        duration_s=round(final["status"]["episode_time_s"], 2),  # when the source ended it
        subtasks_completed=max(0, first.get("steps_left", 0) - last.get("steps_left", 0)),
        corrections=sum(s["source"] == "correction" for s in segments), segments=segments,
        episode_id=episode_id if session.logging else None)


def summarise(reports: Iterable[EpisodeReport]) -> dict[str, Any]:
    """Success rate, CALVIN-style average subtasks completed, episode length and corrections."""
    reports = list(reports)
    return {
        "episodes": len(reports),
        "success_rate": round(float(np.mean([r.success for r in reports])), 3),
        "mean_subtasks_completed": round(float(np.mean([r.subtasks_completed for r in reports])), 2),
        "mean_episode_s": round(float(np.mean([r.duration_s for r in reports])), 1),
        "max_episode_s": round(float(np.max([r.duration_s for r in reports])), 1),
        "corrections": int(sum(r.corrections for r in reports)),
    }
