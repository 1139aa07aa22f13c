"""Benchmark: the learned subgoal image model against the copy-the-current-frame baseline.

1. Coach `episodes` expert episodes per family into a fresh SQLite database.
2. Train the subgoal model (`coachlab distill-subgoals`) at 96 x 96 within its time budget; the
   validation split holds whole episodes out of training.
3. On those held-out episodes, at each segment's first step (the moment a coach previews): PSNR
   gain over copying on the pixels that change, and SSIM, per camera.
4. One preview (every camera) through the app's seam on a live sim observation, each with a
   subtask text it has not encoded before, so the sentence encoder's time is counted.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FAMILIES = ("sort_blocks", "drawer", "bussing")


def _preview_ms(directory: str, trials: int = 30) -> float:
    import torch

    from app import embedded

    torch.set_num_threads(2)
    generator = embedded.subgoal_generator(f"learned:{directory}", vla_client=None)
    robot = embedded.sim_robot()
    try:
        robot.reset("sort_blocks", seed=0)
        obs = robot.observe()
        generator.generate(obs, "warm up")
        samples = []
        for i in range(trials):
            start = time.perf_counter()
            generator.generate(obs, f"put block number {i} on the pad of its colour")
            samples.append((time.perf_counter() - start) * 1e3)
    finally:
        robot.close()
    return round(float(np.median(samples)), 1)


def run(episodes: int = 20, families: tuple[str, ...] = FAMILIES, minutes: float = 15.0, epochs: int = 12) -> dict[str, Any]:
    from bench.distill import TRAIN_SEEDS, _coach
    from distill.subgoal_data import SubgoalDataConfig
    from distill.subgoal_train import SubgoalTrainConfig, train

    work = Path(tempfile.mkdtemp(prefix="bench_subgoals_"))
    db = f"sqlite:///{work}/coached.db"
    _coach(db, families, episodes, TRAIN_SEEDS)
    metrics = train(db, str(work / "subgoals"), SubgoalTrainConfig(data=SubgoalDataConfig(), epochs=epochs,
                                                                   minutes=minutes))
    return {"psnr_gain_changed_db": metrics["psnr_gain_changed_db"], "ssim": metrics["ssim"],
            "preview_ms_median": _preview_ms(str(work / "subgoals")),
            "train_minutes": metrics["train_minutes"], "epochs": metrics["epochs"],
            "train_pairs": metrics["train_pairs"], "val_pairs": metrics["val_pairs"],
            "val_episodes": metrics["val_episodes"], "scores": metrics["val"],
            "plot": metrics["plot"], "samples": metrics["samples"]}


def main() -> None:
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
