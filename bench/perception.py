"""Benchmark: the learned detector against the sim's segmentation oracle.

1. The shipped detector (`distill/detector`), or with `run(train=True)` one trained from scratch as
   `coachlab train-detector` does (timed: `train_minutes`, rendering included).
2. Score it on `per_family` held-out synthetic scenes of each task family (the family's fixtures
   and items, posed at random) and on frames decoded from stored coached episodes (the scripted
   expert coached and recorded to SQLite; the oracle labels each observation as it happens,
   matched to the stored step by its state). Scoring (`distill/detector_metrics.py`): precision
   and recall of (colour, kind) per camera for items at least half visible, the median IoU.
3. The median time of one `detect` on both cameras on one core (`ms_per_frame_pair`).
With `train=True` the shipped detector is scored on the same frames for comparison.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FAMILIES = ("sort_blocks", "drawer", "bussing")
EVAL_SEED = 500_000  # synthetic held-out scenes: far from every training seed
COACH_SEED = 7_000


def _train(work: Path, frames: int, steps: int) -> tuple[Any, float]:
    import argparse

    from app.detector_command import cmd_train_detector
    from distill.learned_detector import LearnedDetector

    start = time.perf_counter()
    args = argparse.Namespace(out=str(work / "detector"), frames=frames, val_frames=0, steps=steps,
                              classifier_steps=None, init=None, seed=0,
                              no_progress=False)
    cmd_train_detector(args)
    return LearnedDetector.load(work / "detector"), round((time.perf_counter() - start) / 60, 2)


def _synthetic(family: str, n: int) -> list:
    from sim.synthetic_scenes import SyntheticConfig, synthetic_frames

    return list(synthetic_frames(n, EVAL_SEED + FAMILIES.index(family), SyntheticConfig(family=family)))


def _coached(work: Path, family: str, episodes: int, every: int) -> list:
    """Frames decoded from the database after coaching, each with the oracle's views of that moment."""
    from types import SimpleNamespace

    from app import embedded
    from coaching.session import CoachingSession
    from sim.mujoco_robot import MujocoRobot
    from sim.segmentation import SegmentationOracle
    from storage import Recorder, open_database
    from storage.episodes import list_episodes, load_episode

    truth: dict[bytes, list] = {}

    class Labelled(MujocoRobot):  # the sim robot that also notes what the oracle sees at each observation
        def observe(self):
            obs = super().observe()
            truth[obs.state.astype(np.float32).tobytes()] = SegmentationOracle(self).views(self.config.cameras)
            return obs

    url = f"sqlite:///{work}/coached_{family}.db"
    with open_database(url) as db, Recorder(db) as recorder, embedded.vla(seed=COACH_SEED) as vla:
        session = CoachingSession(Labelled(), vla, recorder, stepped=True).start()
        try:
            embedded.scripted_coaching(session, [family], episodes, COACH_SEED, "expert", progress=False)
        finally:
            session.close()
        out = []
        for summary in list_episodes(db):
            ep = load_episode(db, summary.id)
            steps = ep.steps()
            for i in range(0, len(steps), every):
                key = steps.state[i].astype(np.float32).tobytes()
                if key in truth:
                    images = {cam: ep.frame(cam, int(steps.index[i])) for cam in ep.cameras()}
                    out.append(SimpleNamespace(images=images, views=truth[key]))
    return out


def _pair_ms(detector, frames: list) -> float:
    import torch

    torch.set_num_threads(1)
    for f in frames[:3]:
        detector.detect(f.images)
    times = []
    for f in frames[:60]:
        start = time.perf_counter()
        detector.detect(f.images)
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 2)


def _recorded_minutes(training: dict) -> float:
    """The minutes a training record says it took, plus those of the detector it started from (`--init`)."""
    own = training.get("train_minutes") or training.get("train_loop_minutes", 0) + training.get("render_minutes", 0)
    return round(own + (_recorded_minutes(training["init_training"]) if "init_training" in training else 0), 2)


def run(train: bool = False, train_frames: int = 1200, steps: int = 2000, per_family: int = 200,
        coached_episodes: int = 2, every: int = 8) -> dict[str, Any]:
    """Score the shipped detector (its `train_minutes` are those its training record measured), or with
    `train` a detector trained here and now, the shipped one beside it."""
    from app import embedded
    from distill.detector_train import evaluate
    from distill.learned_detector import LearnedDetector

    work = Path(tempfile.mkdtemp(prefix="bench_perception_"))
    shipped = LearnedDetector.load(embedded.shipped_detector_dir())
    if train:
        detector, train_minutes = _train(work, train_frames, steps)
    else:
        detector = shipped
        train_minutes = _recorded_minutes(shipped.training)
    synthetic = {f: _synthetic(f, per_family) for f in FAMILIES}
    coached = {f: _coached(work, f, coached_episodes, every) for f in FAMILIES}
    every_frame = [x for fs in synthetic.values() for x in fs] + [x for fs in coached.values() for x in fs]
    result = {**{k: v for k, v in evaluate(detector, every_frame).items() if k != "ms_per_frame_median"},
              "ms_per_frame_pair": _pair_ms(detector, every_frame), "train_minutes": train_minutes,
              "synthetic": {f: evaluate(detector, fs) for f, fs in synthetic.items()},
              "stored_coached": {f: evaluate(detector, fs) for f, fs in coached.items()},
              **({"shipped": {k: v for k, v in evaluate(shipped, every_frame).items() if k != "ms_per_frame_median"}}
                 if train else {}),
              "frames": {"synthetic_per_family": per_family, "stored_coached": {f: len(v) for f, v in coached.items()}},
              "work_dir": str(work)}
    return result


def main() -> None:
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
