"""Many seeded episodes of the scripted coach on one stepped session: what `coachlab coach` runs."""

from __future__ import annotations

from tqdm import tqdm

from coaching.episode import EpisodeReport, drive_episode
from coaching.session import CoachingSession
from sim.coach import CoachConfig
from sim.coach_source import ScriptedCoachSource
from sim.tasks import get_family


def coach_episodes(session: CoachingSession, task_families: list[str], episodes: int, seed: int = 0,
                   profile: str = "expert", progress: bool = True) -> dict[str, list[EpisodeReport]]:
    """`episodes` episodes per task family on seeds `seed ..`, each coached by the scripted coach
    (`profile` expert | sloppy); UnknownTask for a family the sim does not have."""
    reports: dict[str, list[EpisodeReport]] = {t: [] for t in task_families}
    jobs = [(t, seed + k) for t in task_families for k in range(episodes)]
    for name, s in tqdm(jobs, desc="coaching", unit="episode", disable=not progress):
        source = ScriptedCoachSource(get_family(name), CoachConfig(profile=profile), s)
        reports[name].append(drive_episode(session, source, source.settings()))
    return reports
