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
import venv
from pathlib import Path

import numpy as np
import platformdirs

LEROBOT_VERSION = "0.4.4"
# Installed in this order; each line is one pip call. Torch first and alone: CPU build from the
# machine's wheel folder, so nothing after it can swap in a CUDA build (torchvision pins ==2.13.0).
_INSTALL_STEPS = (
    ["torch==2.13.0"],
    ["torchvision==0.28.0", "torchcodec==0.13.0"],
    ["--no-deps", f"lerobot=={LEROBOT_VERSION}"],
    ["datasets>=4.0,<5", "huggingface-hub>=0.34.2,<0.36", "av>=15,<16", "jsonlines>=4,<5", "deepdiff>=7,<9",
     "packaging>=24.2,<26", "pandas", "pyarrow", "imageio[ffmpeg]>=2.34,<3", "termcolor>=2.4,<4",
     "accelerate>=1.10,<2", "draccus==0.10.0", "einops>=0.8,<0.9", "opencv-python-headless>=4.9,<4.13"],
)
_SCRIPT = Path(__file__).with_name("lerobot_read.py")  # runs inside the environment: no coachlab imports


class LoaderUnavailable(RuntimeError):
    """The LeRobot environment could not be built or run; the message says why in one sentence."""


def folder() -> Path:
    """Where the environment lives (`$COACHLAB_LEROBOT_ENV`, else the user's cache dir)."""
    return Path(os.environ.get("COACHLAB_LEROBOT_ENV")
                or Path(platformdirs.user_cache_dir("coachlab")) / f"lerobot-{LEROBOT_VERSION}")


def python() -> Path:
    return folder() / "bin" / "python"


def ensure(quiet: bool = True) -> Path:
    """The environment's python, building the environment first if it is not complete.

    A marker file is written last, so a build cut short is redone, not trusted.
    Raises LoaderUnavailable naming the pip step that failed.
    """
    marker = folder() / "coachlab-ready.json"
    if marker.exists() and python().exists():
        return python()
    venv.EnvBuilder(with_pip=True, clear=True).create(folder())
    for step in _INSTALL_STEPS:
        cmd = [str(python()), "-m", "pip", "install", *(["-q"] if quiet else []), *step]
        r = subprocess.run(cmd, capture_output=quiet, text=True)
        if r.returncode != 0:
            tail = (r.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise LoaderUnavailable(f"Building LeRobot's loader environment at {folder()} failed at "
                                    f"`pip install {' '.join(step)}` ({' '.join(tail) or 'see pip output'}).")
    marker.write_text(json.dumps({"lerobot": LEROBOT_VERSION, "steps": _INSTALL_STEPS}))
    return python()


def load(root: Path, timeout_s: float = 600.0) -> dict[str, np.ndarray | list]:
    """Everything LeRobot's `LeRobotDataset` returns for the dataset at `root`, frame by frame.

    Returns arrays keyed as LeRobot names them (`action` N x A, `observation.state` N x S,
    `timestamp`, `frame_index`, `episode_index`, `index`, `task_index`), the strings `task` and
    `subtask` (lists of N), camera images as `observation.images.CAM` (N x H x W x 3 uint8, decoded
    from the mp4 at each frame's timestamp), and `meta` (what LeRobotDatasetMetadata reported).
    Raises LoaderUnavailable with LeRobot's own last error line if it cannot load the dataset.
    """
    py = ensure()
    with tempfile.TemporaryDirectory(prefix="coachlab-lerobot-") as tmp:
        out = Path(tmp) / "read.npz"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(Path(tmp) / "hf")}
        r = subprocess.run([str(py), str(_SCRIPT), str(root), str(out)], capture_output=True, text=True,
                           timeout=timeout_s, env=env)
        if r.returncode != 0:
            last = [line for line in r.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
            raise LoaderUnavailable(f"LeRobot {LEROBOT_VERSION} could not load the dataset at {root}: {last[0]}")
        with np.load(out, allow_pickle=False) as z:
            read: dict[str, np.ndarray | list] = {k: z[k] for k in z.files}
    for key in ("task", "subtask"):
        if key in read:
            read[key] = [str(s) for s in read[key]]
    read["meta"] = json.loads(str(read.pop("meta_json")))
    return read


if __name__ == "__main__":
    print(ensure(quiet="--verbose" not in sys.argv))
