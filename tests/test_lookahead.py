"""Sim lookahead: subgoal images from running the subtask in a copy of the sim, with the real served policy."""

from __future__ import annotations

import json
import threading

import mujoco
import numpy as np
import pytest

from sim import tasks
from sim.lookahead import NEEDS_SIM_STATE, SimLookahead
from sim.mujoco_robot import MujocoRobot, SimRobotConfig
from coaching.robot import Observation


@pytest.fixture(scope="module")
def lookahead(served_policy):
    la = SimLookahead(served_policy)
    yield la
    la.close()


def _snapshot(robot: MujocoRobot) -> tuple[dict, np.ndarray, dict[str, np.ndarray]]:
    obs = robot.observe()
    return robot.env_state(), robot.proprio(), obs.images


def test_restore_round_trips_through_json(robot):
    robot.reset("sort_blocks", 0)
    for _ in range(2):  # stop mid-motion: velocities and ctrl ramps must come across too
        robot.act(np.array([0.30, 0.25, 0.05, 0.3, 0.0, 0.0]), "ee")
    sim_state = json.loads(json.dumps(robot.env_state()["sim_state"]))  # it travels as JSON
    assert sim_state["task"] == "sort_blocks" and sim_state["seed"] == 0
    copy = MujocoRobot(SimRobotConfig(cameras=()))
    try:
        copy.reset("bussing", 3)  # a different scene loaded: restore must rebuild the right one
        restored = copy.restore(sim_state)
        assert restored.env_state["sim_state"] == sim_state
        # mj_step leaves positions one 2 ms substep behind qpos; restore runs mj_forward, so compare
        # against the original brought up to date the same way
        mujoco.mj_forward(robot.model, robot.data)
        assert np.allclose(restored.state, robot.proprio(), atol=1e-6)
        for _ in range(5):  # and both go on the same way
            action = np.array([0.45, 0.0, 0.10, 0.0, 0.0, 1.0])
            robot.act(action, "ee")
            copy.act(action, "ee")
        assert np.allclose(copy.proprio(), robot.proprio(), atol=1e-6)
    finally:
        copy.close()


def test_pick_preview_runs_on_a_copy(robot, lookahead):
    obs = robot.reset("sort_blocks", 0)
    env_before, proprio_before, images_before = _snapshot(robot)
    result = lookahead.generate(obs, "pick up the red block", task="Sort the blocks")
    assert result.refused is None and result.info["skill"] == "pick"
    assert result.end_state["gripper"]["held"] == "red_block" and "sim_state" not in result.end_state
    assert 0 < result.steps < lookahead.max_steps  # it settled, it did not run out of steps
    assert set(result.images) == {"base", "wrist"}
    moved = np.abs(result.images["base"].astype(int) - obs.images["base"].astype(int)).mean()
    assert moved > 3
    # the episode's robot did not move: the lookahead ran on its private copy
    env_after, proprio_after, images_after = _snapshot(robot)
    assert env_after == env_before
    assert np.array_equal(proprio_after, proprio_before)
    assert all(np.array_equal(images_after[c], images_before[c]) for c in images_before)


def test_put_preview_ends_with_the_block_on_its_pad(robot, lookahead):
    obs = robot.reset("sort_blocks", 0)
    result = lookahead.generate(obs, "put the red block on the red pad")
    assert result.refused is None
    assert tasks.is_in(result.end_state, "red_block", "red_pad")
    assert not tasks.is_in(obs.env_state, "red_block", "red_pad")


def test_a_put_it_preview_while_holding_ends_done_not_refused(robot, lookahead, served_policy):
    """A new user's Preview of "put it on the green pad" with the block in the gripper showed an Error:
    the skill policy's reply to the continued request, once the block was down, was read as a refusal."""
    from coaching.prompt import vla_prompt

    obs = robot.reset("sort_blocks", 0)
    prompt = vla_prompt("Sort the blocks", "pick up the red block", "ee", segment=1)
    for _ in range(200):  # the episode's robot picks the block up (the real served policy drives it)
        if robot.env_state()["gripper"]["held"] == "red_block" and robot.proprio()[8] > 0.08:
            break
        for action in np.asarray(served_policy.infer(robot.observe().to_dict(), prompt)["actions"])[:5]:
            robot.act(action, "ee")
    obs = robot.observe()
    assert obs.env_state["gripper"]["held"] == "red_block"
    result = lookahead.generate(obs, "put it on the red pad", task="Sort the blocks")
    assert result.refused is None and not result.info.get("refused"), result.info
    assert tasks.is_in(result.end_state, "red_block", "red_pad")


def test_refusal_returns_the_current_frames(robot, lookahead):
    obs = robot.reset("sort_blocks", 0)
    result = lookahead.generate(obs, "pick up the unicorn")
    assert result.refused and "unicorn" in result.refused and result.info["refused"]
    assert result.steps == 0
    assert all(np.array_equal(result.images[c], obs.images[c]) for c in obs.images)


def test_without_sim_state_says_what_to_use(robot, lookahead):
    obs = robot.reset("sort_blocks", 0)
    real = Observation(images=obs.images, state=obs.state, timestamp=obs.timestamp)
    with pytest.raises(ValueError) as err:
        lookahead.generate(real, "pick up the red block")
    assert str(err.value) == NEEDS_SIM_STATE
    stripped = {k: v for k, v in obs.env_state.items() if k != "sim_state"}
    with pytest.raises(ValueError, match="learned subgoal model"):
        lookahead.generate(Observation(obs.images, obs.state, obs.timestamp, stripped), "pick up the red block")


def test_one_thread_per_instance(robot, lookahead):
    obs = robot.reset("sort_blocks", 0)
    lookahead.generate(obs, "pick up the unicorn")  # binds the private robot to this thread (if not yet)
    errors: list[Exception] = []

    def other() -> None:
        for call in (lambda: lookahead.generate(obs, "pick up the red block"), lookahead.close):
            try:
                call()
            except RuntimeError as e:
                errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 2 and "own SimLookahead" in str(errors[0]) and "thread that used it" in str(errors[1])
