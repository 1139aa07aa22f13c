"""A cached virtual environment beside the project, for a tool that cannot be installed into it.

LeRobot's dataset loader and openpi's official client pin versions this project has moved past
(torch, numpy, huggingface-hub), so each runs in a virtual environment of its own under the user's
cache dir, built once by install.sh and reused by the tests and benches. `SideEnv` owns building one:
pip steps run in order (one pip call each, so a pinned CPU torch can go first and alone), and a
marker naming those steps is written last, so a build cut short, or one for other steps, is redone.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from dataclasses import dataclass
from pathlib import Path

import platformdirs


class SideEnvUnavailable(RuntimeError):
    """The environment could not be built; the message says which pip step failed, in one sentence."""


@dataclass(frozen=True)
class SideEnv:
    name: str  # the cache folder's name, e.g. "lerobot-0.4.4"
    steps: tuple[tuple[str, ...], ...]  # pip install arguments, one pip call per entry, in order
    folder_variable: str  # an environment variable that, when set, names the folder instead

    def folder(self) -> Path:
        """Where the environment lives (`$folder_variable`, else the user's cache dir / name)."""
        return Path(os.environ.get(self.folder_variable) or Path(platformdirs.user_cache_dir("coachlab")) / self.name)

    def python(self) -> Path:
        return self.folder() / "bin" / "python"

    def ensure(self, quiet: bool = True) -> Path:
        """The environment's python, building the environment first unless it is complete for these steps.
        Raises SideEnvUnavailable naming the pip step that failed and pip's last line."""
        marker = self.folder() / "coachlab-ready.json"
        want = {"steps": [list(s) for s in self.steps]}
        if marker.exists() and self.python().exists() and json.loads(marker.read_text()) == want:
            return self.python()
        venv.EnvBuilder(with_pip=True, clear=True).create(self.folder())
        for step in self.steps:
            cmd = [str(self.python()), "-m", "pip", "install", *(["-q"] if quiet else []), *step]
            r = subprocess.run(cmd, capture_output=quiet, text=True)
            if r.returncode != 0:
                tail = (r.stderr or "").strip().splitlines()[-1:] if quiet else []
                raise SideEnvUnavailable(f"Building the environment at {self.folder()} failed at "
                                         f"`pip install {' '.join(step)}` ({' '.join(tail) or 'see pip output'}).")
        marker.write_text(json.dumps(want))
        return self.python()
