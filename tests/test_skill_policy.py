"""The sim skill policy: grounded action chunks, refusals that hold still, never a 'done'."""

from __future__ import annotations

import numpy as np


def test_chunk_shape_and_interpretation(robot, policy):
    obs = robot.reset("bussing", 0)
    name = next(iter(obs.env_state["objects"]))
    colour, kind = name.split("_", 1)
    reply = policy.infer(obs.to_dict(), {"task": "bus", "subtask": f"grab the {colour} {kind}", "control_mode": "ee"})
    assert reply["actions"].shape == (10, 6) and reply["actions"].dtype == np.float32
    assert reply["info"]["skill"] == "pick" and reply["info"]["object"] == name
    assert "done" not in reply["info"]


def test_unknown_object_is_refused_and_robot_holds(robot, policy):
    obs = robot.reset("bussing", 0)
    reply = policy.infer(obs.to_dict(), {"subtask": "pick up the thing", "control_mode": "ee"})
    assert reply["info"]["refused"] and "thing" in reply["info"]["reason"]
    ee = obs.state[6:9]
    assert np.allclose(reply["actions"][:, :3], ee, atol=1e-4)


def test_empty_subtask_is_refused(robot, policy):
    obs = robot.reset("bussing", 0)
    reply = policy.infer(obs.to_dict(), {"subtask": "   ", "control_mode": "ee"})
    assert reply["info"]["refused"] and reply["info"]["reason"]


def test_holds_still_once_the_subtask_is_achieved(robot, policy):
    robot.reset("sort_blocks", 1)
    prompt = {"subtask": "pick up the blue block", "segment": 1, "episode": "hold"}
    for _ in range(14):
        reply = policy.infer(robot.observe().to_dict(), prompt)
        for a in reply["actions"][:5]:
            robot.act(a, "ee")
    env = robot.env_state()
    assert env["gripper"]["held"] == "blue_block"
    reply = policy.infer(robot.observe().to_dict(), prompt)
    assert np.ptp(reply["actions"][:, :2], axis=0).max() < 0.01  # no wandering: it holds
