"""`coachlab play`: run a distilled high-level policy autonomously in the sim and report how it did,
next to the scripted coach's own figures on the same seeds.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from tqdm import tqdm


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("play", help="run a distilled high-level policy autonomously (evaluate with --episodes N)")
    p.add_argument("--policy", required=True, help="a checkpoint folder written by coachlab distill")
    p.add_argument("--task", required=True, help="a sim task family")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--intervene", choices=["none", "scripted"], default="none",
                   help="scripted: the scripted coach takes over when the policy stalls or stops early")
    p.add_argument("--decide-hz", type=float, default=1.0, dest="decide_hz")
    p.add_argument("--max-episode-s", type=float, default=300.0, dest="max_episode_s")
    p.add_argument("--vla", default=None, help="low-level policy address (default: the sim policy in a child process)")
    p.add_argument("--db", default=None, help="log the episodes (as autonomous) to this database")
    p.add_argument("--noise", type=float, default=1.0, help="failure noise of the sim skill policy")
    p.add_argument("--no-baseline", action="store_true", help="skip the scripted coach's run on the same seeds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_play)


def _summary(reports: list[Any], interventions: bool) -> dict[str, Any]:
    out = {
        "episodes": len(reports),
        "success_rate": round(float(np.mean([r.success for r in reports])), 3),
        "mean_subtasks_completed": round(float(np.mean([r.subtasks_completed for r in reports])), 2),
        "mean_episode_s": round(float(np.mean([r.duration_s for r in reports])), 1),
    }
    if interventions:
        out["interventions"] = int(sum(r.interventions for r in reports))
    return out


def policy_id_in(db: Any, checkpoint_dir: str) -> int:
    """The checkpoint's id in the database the episodes go to, registering it there if it is new."""
    from pathlib import Path

    from distill.checkpoint import load_checkpoint
    from storage import list_policies, register_policy

    path = str(Path(checkpoint_dir).resolve())
    for known in list_policies(db, kind="high_level"):
        if str(Path(known.checkpoint_path).resolve()) == path:
            return known.id
    ckpt = load_checkpoint(path)  # already loaded once: any problem was reported then
    return register_policy(db, "high_level", path, ckpt.episode_ids, ckpt.training.get("metrics", {}))


def cmd_play(args: argparse.Namespace) -> dict[str, Any]:
    from app.cli import UserError
    from coaching.low_level import low_level_policy
    from coaching.scripted_episode import run_episode
    from distill.autonomous import PlayConfig, play_episode
    from distill.model import LearnedHighLevelPolicy
    from sim.coach import CoachConfig, ScriptedCoach
    from sim.mujoco_robot import MujocoRobot
    from sim.tasks import get_family

    family = get_family(args.task)
    if args.episodes < 1 or args.seed < 0:
        raise UserError("--episodes must be at least 1 and --seed zero or more.")
    if not 0.1 <= args.decide_hz <= 10:
        raise UserError("--decide-hz must be between 0.1 and 10 decisions a second.")
    policy = LearnedHighLevelPolicy.load(args.policy)
    policy.check_task(family.description)  # one sentence if it never saw this task
    config = PlayConfig(decide_hz=args.decide_hz, max_episode_s=args.max_episode_s,
                        intervene=None if args.intervene == "none" else args.intervene)
    seeds = list(range(args.seed, args.seed + args.episodes))
    robot = MujocoRobot()
    db = recorder = None
    try:
        if args.db:
            from storage import Recorder, open_database

            db = open_database(args.db)
            recorder = Recorder(db)
            policy.checkpoint_id = policy_id_in(db, args.policy)
        with low_level_policy(args.vla, {"noise": args.noise, "seed": args.seed}) as low_level:
            played = [play_episode(robot, low_level, policy, family.name, s, config, recorder)
                      for s in tqdm(seeds, desc="playing", unit="episode")]
            baseline = [] if args.no_baseline else [
                run_episode(robot, low_level, ScriptedCoach(family, CoachConfig(profile="expert"), s), family.name, s)
                for s in tqdm(seeds, desc="scripted coach", unit="episode")]
    finally:
        try:
            if recorder is not None:
                recorder.close()
        finally:
            if db is not None:
                db.close()
            robot.close()
    result: dict[str, Any] = {"task": family.name, "seeds": [seeds[0], seeds[-1]], "policy": args.policy,
                              "intervene": args.intervene, "policy_figures": _summary(played, True)}
    if baseline:
        result["scripted_coach_figures"] = _summary(baseline, False)
    result["episodes"] = [{"seed": r.seed, "success": r.success, "subtasks_completed": r.subtasks_completed,
                           "interventions": r.interventions, "episode_id": r.episode_id,
                           "subtasks": [f"{s.source}: {s.text}" for s in r.segments]} for r in played]
    return result
