"""Benchmark: distil a high-level policy from scripted coaching and measure autonomy in the sim.

1. Coach `episodes` expert episodes per family (training seeds from `train_seed`) into SQLite.
2. Distil one model for all families through the learned detector; time it.
3. On `eval_episodes` unseen seeds per family (from `eval_seed`): the scripted coach, the policy
   with the learned detector and the VLA's refusals ignored (the headline: pi0 never refuses), and
   CALVIN-style average subtasks completed; on `variant_episodes` of those seeds: the same with
   refusals used, with the sim's segmentation oracle as detector, and the task text alone.
4. Items no log named: seeds whose scenes hold colour x kind pairs none of the training scenes
   held (the bench reads the sim's scene specs to choose them; the policy never does), coach and
   policy side by side.
5. Correction loop: from `seed_episodes` coached episodes per family, distil, play
   `correction_episodes` per family with the scripted coach taking over when the policy stalls
   (logged), re-distil on everything, and compare the mean autonomous success before and after on
   `correction_eval_episodes` seeds per family.
6. One decision's median time on one core, the learned detector included.

Steps 1-4 and 6, and step 5, run side by side in two processes (2 cores), so `train_minutes` is
measured while the other part runs: an upper bound.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FAMILIES = ("sort_blocks", "drawer", "bussing")
TRAIN_SEED, EVAL_SEED, CORRECTION_SEED, UNSEEN_SEED = 0, 1000, 2000, 5000
MAX_EPISODE_S = 120.0  # the scripted coach needs at most ~60 s of sim time on 8-item bussing
TASK_ONLY_S = 30.0  # the task text alone never gets anywhere; 30 s shows it


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


def _play(policy: Any, family: str, seeds: list[int], vla: Any, detector: str = "learned", refusals: bool = False,
          max_s: float = MAX_EPISODE_S, recorder: Any = None, intervene: bool = False) -> list[Any]:
    from app.play_command import play
    from coaching.autonomy import AutonomyConfig

    return play(policy, family, seeds, vla, recorder, AutonomyConfig(max_episode_s=max_s, use_refusals=refusals),
                intervene=intervene, progress=False, detector=detector)


def _rate(reports: list[Any]) -> float:
    return round(float(np.mean([r.success for r in reports])), 3) if reports else 0.0


def _evaluate(policy: Any, families: tuple[str, ...], seeds: list[int], variant_seeds: list[int]) -> dict[str, Any]:
    """Per family: the coach, the policy (headline), avg subtasks completed, and the variants."""
    from app import embedded
    from app.play_command import coached
    from distill.baselines import TaskTextPolicy

    out = {}
    with embedded.vla(seed=seeds[0]) as vla:
        for family in families:
            auto = _play(policy, family, seeds, vla)
            out[family] = {
                "coached_success": _rate(coached(family, seeds, vla, progress=False)),
                "autonomous_success": _rate(auto),
                "avg_subtasks_completed": round(float(np.mean([r.subtasks_completed for r in auto])), 2),
                "autonomous_success_with_refusals": _rate(_play(policy, family, variant_seeds, vla, refusals=True)),
                "oracle_detector_success": _rate(_play(policy, family, variant_seeds, vla, detector="oracle")),
                "task_only_success": _rate(_play(TaskTextPolicy(), family, variant_seeds, vla, max_s=TASK_ONLY_S)),
                "seeds": [seeds[0], seeds[-1]], "variant_seeds": [variant_seeds[0], variant_seeds[-1]]}
            print(family, out[family], flush=True)
    return out


def _scene_labels(family: str, seed: int) -> set[str]:
    """The colour x kind labels of the scene the sim builds for (family, seed): bench bookkeeping only."""
    from sim.tasks import get_family

    return {p.obj.label for p in get_family(family).sample_scene(np.random.default_rng(seed)).items}


def unseen_item_seeds(families: tuple[str, ...], train_seed: int, train_episodes: int, n: int,
                      start: int = UNSEEN_SEED) -> dict[str, list[int]]:
    """Per family, the first `n` seeds from `start` whose scenes hold a label no training scene held
    (families whose scenes never vary, like sort_blocks, get none)."""
    named = {l for f in families for s in range(train_seed, train_seed + train_episodes) for l in _scene_labels(f, s)}
    out = {}
    for family in families:
        seeds = [s for s in range(start, start + 2000) if _scene_labels(family, s) - named][:n]
        if seeds:
            out[family] = seeds
    return out


def _decision_ms(policy: Any, detector: Any) -> float:
    """Median ms of one decision on one core: the detector on two 224 px frames, then `decide`."""
    import torch

    from app import embedded
    from coaching.robot import Observation
    from sim.tasks import get_family

    torch.set_num_threads(1)
    robot = embedded.sim_robot()
    family = get_family("bussing")
    obs = robot.reset("bussing", EVAL_SEED)
    task = family.description
    policy.reset()
    samples = []
    for i in range(40):
        start = time.perf_counter()
        detections = detector.detect(obs.images)
        policy.decide(Observation(obs.images, obs.state, float(i)), detections, task, ["pick up the red cup"][:i % 2])
        samples.append((time.perf_counter() - start) * 1e3)
    robot.close()
    return round(float(np.median(samples[5:])), 2)


def _autonomy(work: Path, episodes: int, eval_episodes: int, variant_episodes: int, unseen_episodes: int,
              families: tuple[str, ...], train_seed: int, eval_seed: int) -> dict[str, Any]:
    """Steps 1-4 and 6."""
    from app import embedded
    from app.play_command import coached
    from distill.learned_policy import LearnedHighLevelPolicy
    from distill.train import TrainConfig, train

    db = f"sqlite:///{work}/coached.db"
    _coach(db, families, episodes, train_seed)
    start = time.perf_counter()
    train(db, str(work / "policy"), TrainConfig(progress=False))
    train_minutes = round((time.perf_counter() - start) / 60, 2)
    policy = LearnedHighLevelPolicy.load(str(work / "policy"))
    result: dict[str, Any] = {"train_minutes": train_minutes,
                              "decision_ms_median": _decision_ms(policy, embedded.detector("learned"))}
    seeds = list(range(eval_seed, eval_seed + eval_episodes))
    result["families"] = _evaluate(policy, families, seeds, seeds[:variant_episodes])
    unseen = unseen_item_seeds(families, train_seed, episodes, unseen_episodes)
    auto, coach = [], []
    with embedded.vla(seed=UNSEEN_SEED) as vla:
        for family, fam_seeds in unseen.items():
            auto += _play(policy, family, fam_seeds, vla)
            coach += coached(family, fam_seeds, vla, progress=False)
    result["unseen_items"] = {"episodes": len(auto), "families": sorted(unseen),
                              "coached_success": _rate(coach), "autonomous_success": _rate(auto)}
    return result


def _correction_loop(work: Path, seed_episodes: int, correction_episodes: int, eval_episodes: int,
                     families: tuple[str, ...], train_seed: int, eval_seed: int) -> dict[str, Any]:
    """Step 5."""
    from app import embedded
    from distill.learned_policy import LearnedHighLevelPolicy
    from distill.train import TrainConfig, train
    from storage import Recorder, open_database

    small = f"sqlite:///{work}/corrections.db"
    _coach(small, families, seed_episodes, train_seed)
    train(small, str(work / "before"), TrainConfig(progress=False))
    before = LearnedHighLevelPolicy.load(str(work / "before"))
    with open_database(small) as db, Recorder(db) as recorder, embedded.vla(seed=CORRECTION_SEED) as vla:
        for family in families:
            seeds = list(range(CORRECTION_SEED, CORRECTION_SEED + correction_episodes))
            _play(before, family, seeds, vla, recorder=recorder, intervene=True)
    # learn from coached and corrected runs alike: the corrections are what the next model should do
    train(small, str(work / "after"), TrainConfig(progress=False))
    after = LearnedHighLevelPolicy.load(str(work / "after"))
    rates: dict[str, Any] = {"eval_episodes_per_family": eval_episodes}
    seeds = list(range(eval_seed, eval_seed + eval_episodes))
    with embedded.vla(seed=eval_seed) as vla:
        for name, policy in (("before", before), ("after", after)):
            per_family = {f: _rate(_play(policy, f, seeds, vla)) for f in families}
            rates[name] = round(float(np.mean(list(per_family.values()))), 3)
            rates[f"{name}_families"] = per_family
    return rates


def run(episodes: int = 20, eval_episodes: int = 20, variant_episodes: int = 10, unseen_episodes: int = 10,
        seed_episodes: int = 5, correction_episodes: int = 20, correction_eval_episodes: int = 10,
        families: tuple[str, ...] = FAMILIES, train_seed: int = TRAIN_SEED, eval_seed: int = EVAL_SEED
        ) -> dict[str, Any]:
    """Both parts at once, the correction loop in a second process."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    work = Path(tempfile.mkdtemp(prefix="bench_distill_"))
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        corrections = pool.submit(_correction_loop, work, seed_episodes, correction_episodes,
                                  correction_eval_episodes, families, train_seed, eval_seed)
        result = _autonomy(work, episodes, eval_episodes, variant_episodes, unseen_episodes, families, train_seed,
                           eval_seed)
        result["corrections"] = corrections.result()
    result["work_dir"] = str(work)
    return result


def main() -> None:
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
