"""Shared fixtures: the sim robot, the sim skill policy, and that policy served over the wire by a child process."""

from __future__ import annotations

import os

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
