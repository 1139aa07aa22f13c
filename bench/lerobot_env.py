"""LeRobot's own dataset loader, in a cached virtual environment of its own, to check an export with.

lerobot cannot be installed beside this project (it pins torch below 2.11, huggingface-hub below
0.36 and opencv below 4.13; the project runs torch 2.13, transformers 5 and opencv 5), and neither
can the standalone `lerobot-dataset` package (the same pins). So the check runs lerobot 0.4.4 (the
newest release for Python 3.11, codebase v3.0) in a virtual environment under the user's cache dir:
CPU torch pinned first (as install.sh does, or pip pulls a CUDA build), torchvision and torchcodec
matching it, then lerobot without its dependencies (its torch pin would replace that torch) and the
libraries `lerobot.datasets` imports, pinned as lerobot pins them. Video decoding goes through
torchcodec, which needs FFmpeg's shared libraries (Debian's `ffmpeg`, installed by install.sh).

`ensure()` builds it once (a few minutes; install.sh calls it, so a fresh machine has it) and
`python -m bench.lerobot_env` does the same from a shell. `load(root)` reads an export with
`lerobot.datasets.lerobot_dataset.LeRobotDataset` in that environment and hands back what it read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.side_env import SideEnv, SideEnvUnavailable

LEROBOT_VERSION = "0.4.4"
# Installed in this order; each line is one pip call. Torch first and alone: CPU build from the
# machine's wheel folder, so nothing after it can swap in a CUDA build (torchvision pins ==2.13.0).
ENV = SideEnv(f"lerobot-{LEROBOT_VERSION}", (
    ("torch==2.13.0",),
    ("torchvision==0.28.0", "torchcodec==0.13.0"),
    ("--no-deps", f"lerobot=={LEROBOT_VERSION}"),
    ("datasets>=4.0,<5", "huggingface-hub>=0.34.2,<0.36", "av>=15,<16", "jsonlines>=4,<5", "deepdiff>=7,<9",
     "packaging>=24.2,<26", "pandas", "pyarrow", "imageio[ffmpeg]>=2.34,<3", "termcolor>=2.4,<4",
     "accelerate>=1.10,<2", "draccus==0.10.0", "einops>=0.8,<0.9", "opencv-python-headless>=4.9,<4.13"),
    # what `lerobot.policies` imports (its factory loads every policy's module), pinned as lerobot pins them,
    # and policy_client's wire: for the LeRobot policy adapter (bench/lerobot_policy.py)
    ("diffusers>=0.27.2,<0.36", "pyserial>=3.5,<4", "gymnasium>=1.1.1,<2", "pyzmq>=25"),
), "COACHLAB_LEROBOT_ENV")
_SCRIPT = Path(__file__).with_name("lerobot_read.py")  # runs inside the environment: no coachlab imports


def ensure(quiet: bool = True) -> Path:
    """The environment's python, built first if need be (see `bench.side_env.SideEnv.ensure`)."""
    return ENV.ensure(quiet)


def load(root: Path, timeout_s: float = 600.0) -> dict[str, np.ndarray | list]:
    """Everything LeRobot's `LeRobotDataset` returns for the dataset at `root`, frame by frame.

    Returns arrays keyed as LeRobot names them (`action` N x A, `observation.state` N x S,
    `timestamp`, `frame_index`, `episode_index`, `index`, `task_index`), the strings `task` and
    `subtask` (lists of N), camera images as `observation.images.CAM` (N x H x W x 3 uint8, decoded
    from the mp4 at each frame's timestamp), and `meta` (what LeRobotDatasetMetadata reported).
    Raises SideEnvUnavailable with LeRobot's own last error line if it cannot load the dataset.
    """
    py = ensure()
    with tempfile.TemporaryDirectory(prefix="coachlab-lerobot-") as tmp:
        out = Path(tmp) / "read.npz"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(Path(tmp) / "hf")}
        r = subprocess.run([str(py), str(_SCRIPT), str(root), str(out)], capture_output=True, text=True,
                           timeout=timeout_s, env=env)
        if r.returncode != 0:
            last = [line for line in r.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
            raise SideEnvUnavailable(f"LeRobot {LEROBOT_VERSION} could not load the dataset at {root}: {last[0]}")
        with np.load(out, allow_pickle=False) as z:
            read: dict[str, np.ndarray | list] = {k: z[k] for k in z.files}
    for key in ("task", "subtask"):
        if key in read:
            read[key] = [str(s) for s in read[key]]
    read["meta"] = json.loads(str(read.pop("meta_json")))
    return read


if __name__ == "__main__":
    print(ensure(quiet="--verbose" not in sys.argv))
