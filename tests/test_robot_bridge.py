"""The robot bridge: the sim served by its own process, driven through the `Robot` seam, and the app on it."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from policy_client import PolicyServerError, PolicyUnreachable
from support import free_port


@pytest.fixture(scope="module")
def bridge_address():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "robot-server", "--port", str(port)],
                            stderr=subprocess.PIPE, text=True)
    assert "robot bridge for the sim" in proc.stderr.readline()
    yield f"tcp://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_bridge_robot_behaves_like_the_robot_it_serves(bridge_address):
    from sim.mujoco_robot import MujocoRobot, SimRobotConfig
    from coaching.robot_bridge import BridgeRobot

    remote = BridgeRobot(bridge_address)
    local = MujocoRobot(SimRobotConfig(control_hz=20))
    assert remote.describe() == local.describe()
    a, b = remote.reset("sort_blocks", 3), local.reset("sort_blocks", 3)
    for cam in a.images:
        np.testing.assert_array_equal(a.images[cam], b.images[cam])
    action = np.array([0.3, 0.1, 0.15, 0.0, 0.0, 1.0])
    for _ in range(5):
        remote.act(action, "ee")
        local.act(action, "ee")
    remote.hold()
    local.hold()
    np.testing.assert_allclose(remote.observe().state, local.observe().state, atol=1e-6)
    with pytest.raises(PolicyServerError, match="Unknown task 'juggling'"):
        remote.reset("juggling", 0)
    assert remote.observe().images["base"].shape == (224, 224, 3)  # still serving after the error
    remote.close()
    local.close()


def test_unreachable_bridge_is_one_sentence():
    from coaching.robot_bridge import BridgeRobot

    start = time.monotonic()
    with pytest.raises(PolicyUnreachable, match="No robot bridge answers .*coachlab robot-server"):
        BridgeRobot(f"tcp://127.0.0.1:{free_port()}", timeout_s=0.5)
    assert time.monotonic() - start < 3


def test_app_coaches_a_robot_behind_a_bridge(bridge_address, tmp_path):
    from app.server import AppConfig, AppConfigError, CoachingApp
    from coaching.session import EpisodeSettings
    from storage import load_episode

    with pytest.raises(AppConfigError, match="zmq://host:port"):
        AppConfig(robot="ros://arm").check()
    app = CoachingApp(AppConfig(port=0, robot=bridge_address.replace("tcp://", "zmq://"), sim_noise=0.0,
                                db=str(tmp_path / "bridge.db"), subgoals="sim"))
    try:
        session = app.session
        episode_id = session.start_episode(EpisodeSettings(task="sort", task_family="sort_blocks", seed=0), user="ana")
        before = session.wait_frame(0).images["wrist"].astype(int)
        preview = session.preview("pick up the red block")  # sim lookahead works through the bridge too
        assert np.abs(preview.images["wrist"].astype(int) - before).mean() > 2
        seg = session.send_subtask("pick up the red block", user="ana", with_subgoals=True)
        deadline = time.monotonic() + 20
        while seg.first_action_wall is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)
        assert np.abs(session.wait_frame(0).images["wrist"].astype(int) - before).mean() > 2
        session.end_episode("success", user="ana")
        record = load_episode(app.db, episode_id)
        assert record.summary.num_steps > 20 and record.robot["name"] == "coachlab-mujoco-arm"
    finally:
        app.close()


@pytest.mark.parametrize("action, mode, says", [
    ([float("nan")] * 6, "ee", "non-finite x, y, z, yaw, pitch, grip"),
    ([0.3, 0.1, float("inf"), 0.0, 0.0, 1.0], "ee", "non-finite z"),
    ([0.3, 0.1, 0.15, 0.0, 0.0, 1.0, 0.5], "ee", r"shape \(7,\) .* takes 6 numbers"),
    ([0.3, 0.1, 0.15], "ee", r"shape \(3,\) .* takes 6 numbers"),
    ([10.0, 0.0, 0.0, 0.0, 0.0, 1.0], "joint", r"out of range: j0_yaw=10 \(allowed -2.8..2.8\)"),
    ([0.3, 0.1, 0.15, 0.0, 0.0, 7.0], "ee", "out of range: grip=7"),
    ([0.3, 0.1, 0.15, 0.0, 0.0, 1.0], "cartesian", "Unknown control mode 'cartesian'"),
])
def test_bridge_refuses_unsafe_actions_and_holds(bridge_address, action, mode, says):
    """Issue 22 fault 4: `act [nan]*6` moved the sim arm 1.99 rad in one period. The bridge (the last hop
    before hardware) must refuse non-finite, wrong-width and out-of-range actions with an error reply."""
    from coaching.robot_bridge import BridgeRobot

    remote = BridgeRobot(bridge_address)
    try:
        remote.reset("sort_blocks", 1)
        for _ in range(10):  # settle, so holding is still
            remote.hold()
        before = remote.observe().state
        with pytest.raises(PolicyServerError, match=says) as caught:
            remote.act(np.array(action), mode)
        assert caught.value.code == "bad_action"
        after = remote.observe().state
        assert np.abs(after[:5] - before[:5]).max() < 0.01  # joints (rad): the arm held
        remote.act(np.array([0.3, 0.1, 0.15, 0.0, 0.0, 1.0]), "ee")  # a good action still runs
    finally:
        remote.close()


NOT_RESET = ("The sim robot has no task yet: reset it with a task family and seed first (the bridge's `reset` "
             "message, or pick a task in the app).")


def test_a_robot_asked_before_any_reset_says_to_reset_it():
    """A fresh `coachlab robot-server` asked to `observe` answered "The robot failed: AttributeError:
    'NoneType' object has no attribute 'update_scene'". Observe, act and hold before any reset must each
    say, in one sentence, to reset first, and the bridge must serve normally once it is reset."""
    from coaching.robot import NotReset
    from coaching.robot_bridge import BridgeRobot
    from sim.mujoco_robot import MujocoRobot

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "robot-server", "--port", str(port)],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "robot bridge for the sim" in proc.stderr.readline()
        remote = BridgeRobot(f"tcp://127.0.0.1:{port}")
        for call in (remote.observe, remote.hold, lambda: remote.act(np.array([0.3, 0.1, 0.15, 0.0, 0.0, 1.0]))):
            with pytest.raises(PolicyServerError) as caught:
                call()
            assert caught.value.code == "not_reset"
            assert str(caught.value) == (f"The robot bridge at tcp://127.0.0.1:{port} answered with an error: "
                                         f"{NOT_RESET}")
        assert remote.reset("sort_blocks", 0).images["base"].shape == (224, 224, 3)
        remote.hold()
        assert remote.observe().task_progress == {"success": False, "steps_left": 6}
        remote.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    with pytest.raises(NotReset) as caught:  # the embedded sim says the same without a bridge
        MujocoRobot().observe()
    assert str(caught.value) == NOT_RESET


def test_sim_robot_refuses_unsafe_actions_itself(robot):
    """The embedded sim is its own last hop: the same check runs in `MujocoRobot.act`."""
    from coaching.action_check import ActionRejected
    from sim.scene import ARM_CTRL_RANGE

    robot.reset("sort_blocks", 1)
    before = robot.proprio().copy()
    with pytest.raises(ActionRejected, match="non-finite"):
        robot.act(np.full(6, np.nan), "ee")
    with pytest.raises(ActionRejected, match="takes 6 numbers"):
        robot.act(np.zeros(4), "joint")
    np.testing.assert_array_equal(robot.proprio(), before)  # nothing was stepped
    lo, hi = robot.describe().action_bounds["joint"]
    ranges = robot.model.actuator_ctrlrange[:5]
    np.testing.assert_allclose(ranges, np.array(ARM_CTRL_RANGE).T)  # the bounds state the actuators' ranges
    assert (lo[:5], hi[:5]) == ARM_CTRL_RANGE
