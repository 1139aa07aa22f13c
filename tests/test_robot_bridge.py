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
