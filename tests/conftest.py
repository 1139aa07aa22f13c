"""Shared fixtures: the sim robot, the sim skill policy, and that policy served over the wire by a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def grounder():
    from sim.grounding import Grounder

    return Grounder()


@pytest.fixture(scope="session")
def robot():
    from sim.mujoco_robot import MujocoRobot

    r = MujocoRobot()
    yield r
    r.close()


@pytest.fixture(scope="session")
def policy(grounder):
    from sim.skill_policy import SimSkillPolicy, SkillPolicyConfig

    return SimSkillPolicy(SkillPolicyConfig(noise=0.0), grounder)


@pytest.fixture(scope="session")
def served_policy():
    """A client of the sim skill policy (noise 0) served by a child process, as every run uses it."""
    from coaching.low_level import low_level_policy

    with low_level_policy(sim_options={"noise": 0.0}) as client:
        yield client


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh database of each kind: a SQLite file, and a database on one real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/coachlab.db"
    from storage.local_postgres import shared_server

    return shared_server().create_database()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, launched as the UI bench launches it (for the browser tests)."""
    from playwright.sync_api import sync_playwright

    from bench.ui import launch_chromium

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory) -> tuple[str, str]:
    """(database URL, checkpoint folder): 3 expert-coached sort_blocks episodes and a high-level policy
    distilled from them in 2 epochs; small, but real from end to end."""
    from distill.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("tiny_policy")
    url = f"sqlite:///{folder / 'coach.db'}"
    r = subprocess.run([sys.executable, "-m", "app.cli", "coach", "--task", "sort_blocks", "--episodes", "3",
                        "--seed", "0", "--noise", "0", "--db", url, "--json"],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    train(url, str(folder / "policy"), TrainConfig(epochs=2, progress=False))
    return url, str(folder / "policy")
