"""Benchmark: distil a high-level policy from scripted coaching and measure autonomy in the sim.

1. Coach `episodes` expert episodes per family (training seeds) into a fresh SQLite database.
2. Distil one model for all families; time it.
3. On `eval_episodes` unseen seeds per family: the scripted coach, the distilled policy, and the
   task text alone sent to the low-level policy (no high level), each on the same seeds.
4. Correction loop: from `seed_episodes` coached episodes per family, distil, play `correction_episodes`
   per family with the scripted coach intervening (logged), re-distil, and compare autonomy before/after.
5. One decision's median time on one core.

Steps 1-3 and step 4 run side by side in two processes. The full run took 32-42 minutes on 2 cores;
the counts are arguments of `run` for a smaller try.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FAMILIES = ("sort_blocks", "drawer", "bussing")
TRAIN_SEEDS, EVAL_SEEDS, CORRECTION_SEEDS = 0, 1000, 2000


def _coach(db_url: str, families: tuple[str, ...], episodes: int, seed: int) -> None:
    from app import embedded
    from coaching.session import CoachingSession
    from storage import Recorder, open_database

    with open_database(db_url) as db, Recorder(db) as recorder, embedded.vla(seed=seed) as vla:
        session = CoachingSession(embedded.sim_robot(), vla, recorder, stepped=True).start()
        try:
            embedded.scripted_coaching(session, list(families), episodes, seed, "expert")
        finally:
            session.close()


def _evaluate(policy: Any, families: tuple[str, ...], episodes: int, with_coach: bool, with_task_only: bool,
              db_url: str | None = None, intervene: bool = False) -> dict[str, dict[str, float]]:
    """Success per family on unseen seeds: the policy (through the one autonomy driver, as
    `coachlab play` and the Autonomous tab run it), the scripted coach and the task text alone."""
    from app import embedded
    from app.play_command import coached, play
    from coaching.autonomy import AutonomyConfig
    from distill.baselines import TaskTextPolicy
    from storage import Recorder, open_database

    out = {}
    db = open_database(db_url) if db_url else None
    recorder = Recorder(db) if db else None
    seed0 = CORRECTION_SEEDS if intervene else EVAL_SEEDS
    try:
        with embedded.vla(seed=seed0) as vla:
            for family in families:
                seeds = list(range(seed0, seed0 + episodes))
                row = {}
                if policy is not None:
                    reports = play(policy, family, seeds, vla, recorder, intervene=intervene)
                    row["autonomous_success"] = float(np.mean([r.success for r in reports]))
                if with_coach:
                    row["coached_success"] = float(np.mean([r.success for r in coached(family, seeds, vla)]))
                if with_task_only:
                    task_only = play(TaskTextPolicy(), family, seeds, vla, autonomy=AutonomyConfig(max_episode_s=120))
                    row["task_only_success"] = float(np.mean([r.success for r in task_only]))
                out[family] = {k: round(v, 3) for k, v in row.items()}
    finally:
        if recorder is not None:
            recorder.close()
            db.close()
    return out


def _decision_ms(policy: Any) -> float:
    import torch

    from coaching.robot import Observation

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    images = {c: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for c in ("base", "wrist")}
    observation = Observation(images, np.zeros(10, np.float32), 0.0)
    samples = []
    for _ in range(50):
        start = time.perf_counter()
        policy.decide(observation, [], policy.tasks[0] if policy.tasks else "", ["pick up the red block"])
        samples.append((time.perf_counter() - start) * 1e3)
    return round(float(np.median(samples[5:])), 2)


def _autonomy(work: Path, episodes: int, eval_episodes: int, epochs: int, families: tuple[str, ...]) -> dict[str, Any]:
    """Steps 1-3 and 5: coach, distil (timed), evaluate against the coach and the task text alone."""
    from distill.learned_policy import LearnedHighLevelPolicy
    from distill.train import TrainConfig, train

    db = f"sqlite:///{work}/coached.db"
    _coach(db, families, episodes, TRAIN_SEEDS)
    start = time.perf_counter()
    train(db, str(work / "policy"), TrainConfig(epochs=epochs))
    train_minutes = round((time.perf_counter() - start) / 60, 2)
    policy = LearnedHighLevelPolicy.load(str(work / "policy"))
    return {"train_minutes": train_minutes, "decision_ms_median": _decision_ms(policy),
            "families": _evaluate(policy, families, eval_episodes, True, True)}


def _correction_loop(work: Path, seed_episodes: int, correction_episodes: int, eval_episodes: int, epochs: int,
                     families: tuple[str, ...]) -> dict[str, Any]:
    """Step 4: distil from a few coached episodes, play with the scripted coach correcting, re-distil."""
    from distill.dataset import DatasetConfig
    from distill.learned_policy import LearnedHighLevelPolicy
    from distill.train import TrainConfig, train

    small = f"sqlite:///{work}/corrections.db"
    _coach(small, families, seed_episodes, TRAIN_SEEDS)
    train(small, str(work / "before"), TrainConfig(epochs=epochs))
    before = LearnedHighLevelPolicy.load(str(work / "before"))
    _evaluate(before, families, correction_episodes, False, False, db_url=small, intervene=True)
    # learn from coached and corrected runs alike: the corrections are what the next model should do
    train(small, str(work / "after"), TrainConfig(epochs=epochs, data=DatasetConfig(status=("success",))))
    after = LearnedHighLevelPolicy.load(str(work / "after"))
    rates = {}
    for name, policy in (("before", before), ("after", after)):
        per_family = _evaluate(policy, families, eval_episodes, False, False)
        rates[name] = round(float(np.mean([v["autonomous_success"] for v in per_family.values()])), 3)
        rates[f"{name}_families"] = {f: v["autonomous_success"] for f, v in per_family.items()}
    return {**rates, "eval_episodes_per_family": eval_episodes}


def run(episodes: int = 20, eval_episodes: int = 20, seed_episodes: int = 5, correction_episodes: int = 20,
        correction_eval_episodes: int = 10, epochs: int = 10, families: tuple[str, ...] = FAMILIES) -> dict[str, Any]:
    """Both parts at once, the correction loop in a second process: on 2 cores the bench took 32-42 minutes
    rather than about an hour (training is timed while the other part runs, so its figure is an upper bound)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    work = Path(tempfile.mkdtemp(prefix="bench_distill_"))
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        corrections = pool.submit(_correction_loop, work, seed_episodes, correction_episodes,
                                  correction_eval_episodes, epochs, families)
        result = _autonomy(work, episodes, eval_episodes, epochs, families)
        result["corrections"] = corrections.result()
    result["work_dir"] = str(work)
    return result


def main() -> None:
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
