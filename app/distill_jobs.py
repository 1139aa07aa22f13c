"""Background jobs of the Distill tab: training and evaluation, each in a child process.

A child process, not a thread, because training and `play` are CPU-heavy Python: in the app's
process they would take the GIL from the control loop of the live robot. A `Job` reads the
child's tqdm bars from stderr (progress), its `--json` report from stdout (result), and its last
stderr line when it fails (the commands print one sentence for a user's mistake). No Gradio here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
_BAR = re.compile(r"(?P<desc>[\w ]+):\s*\d+%\|.*?\|\s*(?P<n>\d+)/(?P<total>\d+)")


@dataclass
class Progress:
    desc: str = "starting"
    n: int = 0
    total: int = 0

    @property
    def fraction(self) -> float:
        return self.n / self.total if self.total else 0.0


def parse_progress(text: str) -> Progress | None:
    """The last tqdm bar state in `text` (bars redraw with carriage returns), or None."""
    found = list(_BAR.finditer(text))
    if not found:
        return None
    m = found[-1]
    return Progress(m["desc"].strip(), int(m["n"]), int(m["total"]))


@dataclass
class Job:
    """A sequence of commands run one after another in child processes on a background thread."""

    commands: list[list[str]]
    env: dict[str, str] = field(default_factory=dict)
    on_result: Callable[[dict[str, Any]], None] | None = None  # called with each command's JSON report
    progress: Progress = field(default_factory=Progress)
    step: int = 0  # the index of the command running
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    _proc: subprocess.Popen | None = None
    _cancelled: bool = False

    def start(self) -> "Job":
        self._thread = threading.Thread(target=self._run, name="distill-job", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return hasattr(self, "_thread") and self._thread.is_alive()

    def wait(self, timeout_s: float | None = None) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def cancel(self) -> None:
        self._cancelled = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def _run(self) -> None:
        env = {**os.environ, **self.env}
        for self.step, cmd in enumerate(self.commands):
            if self._cancelled:
                self.error = "Cancelled."
                return
            self.progress = Progress()
            try:
                report = self._one(cmd, env)
            except OSError as e:
                self.error = f"Cannot start {cmd[0]}: {e.strerror or e}."
                return
            if report is None:
                return
            self.results.append(report)
            if self.on_result is not None:
                self.on_result(report)

    def _one(self, cmd: list[str], env: dict[str, str]) -> dict[str, Any] | None:
        self._proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stderr = bytearray()
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(self._proc.stdout.read()), daemon=True)
        reader.start()
        while chunk := self._proc.stderr.read1(4096):
            stderr += chunk
            tail = stderr[-4000:].decode(errors="replace")
            self.progress = parse_progress(tail) or self.progress
        code = self._proc.wait()
        reader.join()
        if self._cancelled:
            self.error = "Cancelled."
            return None
        if code != 0:
            lines = [ln for ln in re.split(r"[\r\n]", stderr.decode(errors="replace")) if ln.strip()]
            last = lines[-1].strip() if lines else f"exit code {code}"
            # "distill: ..." / "coachlab play: ...": the one sentence after the command's name
            self.error = re.sub(r"^(distill|coachlab \w+): ", "", last)
            return None
        text = b"".join(out).decode(errors="replace")
        try:
            return json.loads(text[text.index("{"):])
        except ValueError:
            self.error = "The job finished without a report."
            return None


def train_command(out_dir: str, epochs: int, tasks: list[str], status: list[str], min_quality: int | None) -> list[str]:
    """`python -m distill.train` with the Distill tab's choices (the database comes by $COACHLAB_DB)."""
    cmd = [sys.executable, "-m", "distill.train", "--out", out_dir, "--epochs", str(epochs), "--json",
           "--status", ",".join(status)]
    if tasks:
        cmd += ["--tasks", ",".join(tasks)]
    if min_quality is not None:
        cmd += ["--min-quality", str(min_quality)]
    return cmd


def play_command(policy_dir: str, task_family: str, episodes: int, seed: int, max_episode_s: float,
                 noise: float) -> list[str]:
    """`coachlab play` of one task on its own sim robot and VLA child process, next to the scripted coach."""
    return [sys.executable, "-m", "app.cli", "play", "--policy", policy_dir, "--task-family", task_family, "--episodes",
            str(episodes), "--seed", str(seed), "--max-episode-s", str(max_episode_s), "--noise", str(noise), "--json"]
