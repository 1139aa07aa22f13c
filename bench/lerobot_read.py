"""Run inside LeRobot's environment (bench/lerobot_env.py), never imported by coachlab: read a dataset
with LeRobot's own `LeRobotDataset` and save what it returned to an .npz for the caller to compare.

Usage: python lerobot_read.py DATASET_ROOT OUT.npz

Camera frames are saved as 4x4 block means (uint8, H/4 x W/4 x 3): small enough to hand back for
thousands of frames, and what a comparison with the stored JPEGs needs (the video codec's error is
high-frequency; a wrong or shifted frame is not).
"""

import json
import sys

import numpy as np
import torch

import torchvision_shim  # noqa: F401  (before lerobot: see its docstring)
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402


def _blocks(chw: torch.Tensor) -> np.ndarray:
    img = (chw.clamp(0, 1) * 255.0).permute(1, 2, 0).numpy()
    h, w = img.shape[0] // 4 * 4, img.shape[1] // 4 * 4
    return img[:h, :w].reshape(h // 4, 4, w // 4, 4, 3).mean(axis=(1, 3)).round().astype(np.uint8)


def main(root: str, out: str) -> None:
    ds = LeRobotDataset("coachlab/export", root=root, video_backend="torchcodec")
    cams = list(ds.meta.camera_keys)
    cols: dict[str, list] = {}
    for i in range(len(ds)):
        item = ds[i]
        for key, value in item.items():
            if key in cams:
                value = _blocks(value)
            elif isinstance(value, torch.Tensor):
                value = value.numpy()
            cols.setdefault(key, []).append(value)
    arrays = {}
    for key, values in cols.items():
        arrays[key] = np.array(values) if not isinstance(values[0], str) else np.array(values, dtype=str)
    episodes = ds.meta.episodes.to_pandas()
    meta = {"fps": ds.meta.fps, "total_episodes": ds.meta.total_episodes, "total_frames": ds.meta.total_frames,
            "camera_keys": cams, "features": list(ds.meta.features), "tasks": list(ds.meta.tasks.index),
            "subtasks": None if ds.meta.subtasks is None else list(ds.meta.subtasks.index),
            "episodes": json.loads(episodes.to_json(orient="records")), "num_frames": len(ds),
            "stats_keys": sorted((ds.meta.stats or {}).keys())}
    np.savez(out, meta_json=np.array(json.dumps(meta)), **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
