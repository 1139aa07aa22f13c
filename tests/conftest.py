"""Shared fixtures: the sim robot and the sim skill policy are built once per test module."""

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
