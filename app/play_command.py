"""`coachlab play`: run a distilled high-level policy autonomously and report how it did, next to
the scripted coach's own figures on the same seeds.

Both run the one driver of every autonomous episode (`coaching/autonomy.py`, the same the
Autonomous tab runs) on a stepped session of the embedded sim robot, with the VLA over the wire.
"""

from __future__ import annotations

import argparse
from typing import Any

from tqdm import tqdm

from app.embedded import NOISE_HELP, SIM_NOISE
from app.errors import UserError
from coaching.config_flags import add_flags, from_flags
from coaching.autonomy import AutonomyConfig

AUTONOMY_FLAGS = ("decide_hz", "max_episode_s", "use_refusals")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("play", help="run a distilled high-level policy autonomously (evaluate with --episodes N)")
    p.add_argument("--policy", required=True, help="a checkpoint folder written by coachlab distill")
    p.add_argument("--task-family", "--task", required=True, dest="task_family", help="a sim task family")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--intervene", choices=["none", "scripted"], default="none",
                   help="scripted: the scripted coach takes over when the policy stalls or stops early")
    add_flags(p, AutonomyConfig, AUTONOMY_FLAGS)
    p.add_argument("--detector", default="learned", help="what the policy sees the items with: learned (the shipped "
                   "detector), learned:DIR, owl:DIR, oracle (the sim's segmentation, for ablations) or none")
    p.add_argument("--vla", default=None, help="VLA address (default: the sim policy in a child process)")
    p.add_argument("--vla-key", default=None, dest="vla_key",
                   help="the VLA server's public key when it uses keys (or $COACHLAB_VLA_KEY)")
    p.add_argument("--db", default=None, help="log the episodes (as autonomous) to this database")
    p.add_argument("--noise", type=float, default=SIM_NOISE, help=NOISE_HELP)
    p.add_argument("--no-baseline", action="store_true", help="skip the scripted coach's run on the same seeds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_play)


def play(policy: Any, task_family: str, seeds: list[int], vla: Any, recorder: Any = None,
         autonomy: Any = None, intervene: bool = False, progress: bool = True, detector: str | None = "learned"
         ) -> list[Any]:
    """The policy's episodes on the sim, one per seed, through a stepped session (logged with a recorder),
    the items seen through the detector `detector` names (see `app.embedded.detector`)."""
    from app import embedded
    from coaching.autonomy import AutonomyDriver
    from coaching.episode import drive_episode
    from coaching.session import CoachingSession, EpisodeSettings

    task = embedded.task_families()[task_family]
    robot = embedded.sim_robot()
    seeing = embedded.detector(detector, robot)
    session = CoachingSession(robot, vla, recorder, stepped=True).start()
    try:
        reports = []
        for seed in tqdm(seeds, desc=f"{task_family}: policy", unit="episode", disable=not progress):
            source = AutonomyDriver(policy, task, autonomy, seeing)
            if intervene:
                source = embedded.scripted_intervention(source, task_family, seed)
            reports.append(drive_episode(session, source, EpisodeSettings(task, task_family, seed), mode="autonomous",
                                       policy_checkpoint_id=policy.checkpoint_id))
        return reports
    finally:
        session.close()


def coached(task_family: str, seeds: list[int], vla: Any, progress: bool = True) -> list[Any]:
    """The scripted expert coach on the same seeds (not logged): the figure the policy is held against."""
    from app import embedded
    from coaching.session import CoachingSession

    session = CoachingSession(embedded.sim_robot(), vla, stepped=True).start()
    try:
        return embedded.scripted_coaching(session, [task_family], len(seeds), seeds[0], progress=progress)[task_family]
    finally:
        session.close()


def cmd_play(args: argparse.Namespace) -> dict[str, Any]:
    from app import embedded
    from app.policy_registry import policy_id_in
    from coaching.episode import summarise
    from distill.learned_policy import LearnedHighLevelPolicy

    task_family = embedded.check_task_family(args.task_family)
    if args.episodes < 1 or args.seed < 0:
        raise UserError("--episodes must be at least 1 and --seed zero or more.")
    autonomy = from_flags(AutonomyConfig, args, AUTONOMY_FLAGS)
    try:
        autonomy.check()
    except ValueError as e:
        raise UserError(str(e)) from None
    policy = LearnedHighLevelPolicy.load(args.policy)
    policy.check_task(embedded.task_families()[task_family])  # one sentence if it never saw this task
    seeds = list(range(args.seed, args.seed + args.episodes))
    db = recorder = None
    try:
        if args.db:
            from storage import Recorder, open_database

            db = open_database(args.db)
            recorder = Recorder(db)
            policy.checkpoint_id = policy_id_in(db, args.policy)
        with embedded.vla(args.vla, server_key=args.vla_key, noise=args.noise, seed=args.seed) as vla:
            played = play(policy, task_family, seeds, vla, recorder, autonomy, intervene=args.intervene == "scripted",
                          detector=args.detector)
            baseline = [] if args.no_baseline else coached(task_family, seeds, vla)
    finally:
        try:
            if recorder is not None:
                recorder.close()
        finally:
            if db is not None:
                db.close()
    result: dict[str, Any] = {"task_family": task_family, "seeds": [seeds[0], seeds[-1]], "policy": args.policy,
                              "intervene": args.intervene, "policy_figures": summarise(played)}
    if baseline:
        result["scripted_coach_figures"] = summarise(baseline)
    result["episodes"] = [{"seed": r.seed, "success": r.success, "subtasks_completed": r.subtasks_completed,
                           "corrections": r.corrections, "episode_id": r.episode_id,
                           "subtasks": [f"{s['source']}: {s['text']}" for s in r.segments]} for r in played]
    return result
