"""Shared fixtures: the sim robot, the sim skill policy, and that policy served over the wire by a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
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
    from app.embedded import vla

    with vla(noise=0.0) as client:
        yield client


@pytest.fixture(scope="session")
def stepped_session(served_policy):
    """A stepped `CoachingSession` (the loop on the sim's clock, nothing logged) on its own sim robot:
    what `coachlab coach` and `coachlab play` drive."""
    from app.embedded import sim_robot
    from coaching.session import CoachingSession

    session = CoachingSession(sim_robot(), served_policy, stepped=True).start()
    yield session
    session.close()


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
    distilled from them (at least `min_steps` steps); small, but real from end to end."""
    from distill.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("tiny_policy")
    url = f"sqlite:///{folder / 'coach.db'}"
    r = subprocess.run([sys.executable, "-m", "app.cli", "coach", "--task", "sort_blocks", "--episodes", "3",
                        "--seed", "0", "--noise", "0", "--db", url, "--json"],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    train(url, str(folder / "policy"), TrainConfig(epochs=8, progress=False))
    return url, str(folder / "policy")


@pytest.fixture(scope="session")
def four_coached_episodes(tmp_path_factory) -> Path:
    """A SQLite file (cleanly closed) with four expert-coached sort_blocks episodes (seeds 0-3, no noise)."""
    path = tmp_path_factory.mktemp("four") / "coach.db"
    r = subprocess.run([sys.executable, "-m", "app.cli", "coach", "--task", "sort_blocks", "--episodes", "4",
                        "--seed", "0", "--noise", "0", "--db", str(path), "--json"],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return path


@contextmanager
def _coaching_session(db_path, subgoals: str = "none"):
    """A started `CoachingSession`: the sim robot at 20 Hz, the sim policy (no noise) served by a child
    process, a SQLite log at `db_path`, previews from `subgoals` (sim, none or learned:DIR)."""
    from app import embedded
    from coaching.session import CoachingSession
    from storage import Recorder, open_database

    db = open_database(str(db_path))
    recorder = Recorder(db)
    try:
        with embedded.vla(noise=0.0, control_hz=20) as vla:
            session = CoachingSession(embedded.sim_robot(20), vla, recorder,
                                      subgoals=embedded.subgoal_generator(subgoals, vla),
                                      idle_reset=("sort_blocks", 0)).start()
            try:
                yield session
            finally:
                session.close()
    finally:
        recorder.close()
        db.close()


@pytest.fixture(scope="session")
def coaching_session():
    """`with coaching_session(db_path, subgoals) as session:` (see `_coaching_session`)."""
    return _coaching_session
