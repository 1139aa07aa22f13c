"""The MuJoCo sim robot: real scenes, real rendering, real contact physics."""

from __future__ import annotations

import numpy as np

from sim import tasks


def test_reset_renders_both_cameras(robot):
    obs = robot.reset("bussing", 0)
    desc = robot.describe()
    assert desc.cameras == ("base", "wrist") and set(desc.control_modes) == {"ee", "joint"}
    assert set(obs.images) == {"base", "wrist"}
    for img in obs.images.values():
        assert img.shape == (224, 224, 3) and img.dtype == np.uint8 and img.std() > 10
    assert not np.array_equal(obs.images["base"], obs.images["wrist"])
    assert obs.state.shape == (len(desc.state_names),)


def test_seeds_randomise_scenes(robot):
    a = robot.reset("bussing", 1).env_state["objects"]
    b = robot.reset("bussing", 2).env_state["objects"]
    a_again = robot.reset("bussing", 1).env_state["objects"]
    assert a.keys() == a_again.keys()
    assert a.keys() != b.keys() or any(a[k]["pos"] != b[k]["pos"] for k in a)
    assert 4 <= len(a) <= 8


def test_ee_control_reaches_target_and_cameras_see_it(robot):
    obs = robot.reset("sort_blocks", 0)
    target = np.array([0.45, 0.15, 0.12, 0.4, 0.0, 1.0])
    for _ in range(20):
        robot.act(target, "ee")
    after = robot.observe()
    assert np.linalg.norm(after.state[6:9] - target[:3]) < 0.01
    assert np.abs(after.images["wrist"].astype(int) - obs.images["wrist"].astype(int)).mean() > 5


def test_joint_control_follows_targets(robot):
    robot.reset("sort_blocks", 0)
    q = np.array([0.3, 0.6, 1.4, 1.0, -0.2, 0.5])
    for _ in range(20):
        robot.act(q, "joint")
    assert np.allclose(robot.observe().state[:5], q[:5], atol=0.02)


def _pick(robot, policy, text):
    for _ in range(12):
        env = robot.env_state()
        reply = policy.infer({"env_state": env}, {"subtask": text, "segment": 0, "episode": text})
        for a in reply["actions"][:5]:
            robot.act(a, "ee")
    return robot.env_state()


def test_grasp_holds_by_friction_and_slips_without_it(robot, policy):
    robot.reset("sort_blocks", 0)
    env = _pick(robot, policy, "pick up the red block")
    assert tasks.is_held(env, "red_block")
    # Make block and pads slippery (MuJoCo mixes frictions by max): the same squeeze now fails.
    for geom in (robot.model.geom("red_block").id, *robot._finger_geoms):
        robot.model.geom_friction[geom, 0] = 0.02
    for _ in range(10):
        robot.hold()
    env = robot.env_state()
    assert not tasks.is_held(env, "red_block")
    assert env["objects"]["red_block"]["pos"][2] < 0.05  # it fell back to the table


def test_task_success_checks(robot, policy):
    env = robot.reset("sort_blocks", 2).env_state
    family = tasks.get_family("sort_blocks")
    assert not family.success(env)
    assert [s.skill for s in family.remaining_steps(env)] == ["pick", "place"] * 3
    env = _pick(robot, policy, "grab the green block")
    assert tasks.step_done(tasks.Step("pick", "green_block"), env)
    assert not tasks.step_done(tasks.Step("place", "green_block", "green_pad"), env)
