"""openpi layouts built from the robot's description, and the layouts' actions made into the robot's.

Real parts: openpi-wire servers on loopback sockets (`OpenPIFormatServer`) answering with openpi-style
policies that record what they got, coachlab's openpi client fitted to a robot through
`coaching.vla.fit_vla` (what every session calls), the sim robot's own description and observations,
and `RobotDescription`s of a 7-joint arm, an end-effector arm and a two-arm ALOHA-like robot.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from coaching.robot import RobotDescription
from coaching.vla import VLADoesNotFit, fit_vla
from policy_client import BadAddress, PolicyServerError, connect
from policy_client.openpi_server import OpenPIFormatServer


class ScriptedOpenPIPolicy:
    """An openpi-style policy: records each request, answers `self.chunk` (H x width)."""

    def __init__(self, chunk: np.ndarray):
        self.chunk, self.seen = chunk, []

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(obs)
        return {"actions": self.chunk}


@pytest.fixture()
def serve():
    servers = []

    def start(chunk: np.ndarray) -> tuple[OpenPIFormatServer, ScriptedOpenPIPolicy]:
        policy = ScriptedOpenPIPolicy(np.asarray(chunk, np.float32))
        servers.append(OpenPIFormatServer(policy).start())
        return servers[-1], policy

    yield start
    for server in servers:
        server.stop()


def _robot(state_names, action_names, cameras=("base", "wrist")) -> RobotDescription:
    return RobotDescription(name="lab-arm", cameras=tuple(cameras), image_size=(8, 8), state_names=tuple(state_names),
                            action_names={k: tuple(v) for k, v in action_names.items()}, control_hz=15.0)


def _obs(robot: RobotDescription, state) -> dict[str, Any]:
    return {"images": {c: np.full((8, 8, 3), i, np.uint8) for i, c in enumerate(robot.cameras)},
            "state": np.asarray(state, np.float32), "timestamp": 0.0}


ARM7 = _robot([f"j{i}" for i in range(1, 8)] + ["gripper_position"],
              {"joint": [f"j{i}" for i in range(1, 8)] + ["grip"]})
EE_ARM = _robot(["ee_x", "ee_y", "ee_z", "ee_roll", "ee_pitch", "ee_yaw", "gripper"],
                {"ee": ["x", "y", "z", "roll", "pitch", "yaw", "grip"]})
ALOHA = _robot([f"{side}_{j}" for side in ("left", "right")
                for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")],
               {"joint": [f"{side}_{j}" for side in ("left", "right")
                          for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")]},
               cameras=("cam_low", "cam_high", "cam_left_wrist", "cam_right_wrist"))


@pytest.mark.parametrize("layout", ["libero", "droid", "aloha"])
def test_layouts_are_built_from_the_sim_robots_state_names(robot, serve, layout):
    server, policy = serve(np.zeros((10, 6)))
    description = robot.describe()
    client = connect(f"openpi://{server.address}?layout={layout}")
    fit_vla(client, description, "ee")
    obs = robot.reset("sort_blocks", 0)
    client.infer(obs.to_dict(), {"subtask": "pick up the red block", "control_mode": "ee"})
    got, state, names = policy.seen[-1], obs.state, list(description.state_names)
    pick = lambda *wanted: state[[names.index(n) for n in wanted]]  # noqa: E731
    if layout == "libero":  # LIBERO's state is the end-effector pose and the gripper
        np.testing.assert_array_equal(got["observation/state"], pick("ee_x", "ee_y", "ee_z", "ee_yaw", "gripper_opening"))
        np.testing.assert_array_equal(got["observation/wrist_image"], obs.images["wrist"])
    elif layout == "droid":
        np.testing.assert_array_equal(got["observation/joint_position"],
                                      pick("j0_yaw", "j1_shoulder", "j2_elbow", "j3_wrist_pitch", "j4_wrist_roll"))
        np.testing.assert_array_equal(got["observation/gripper_position"], pick("gripper_opening"))
        np.testing.assert_array_equal(got["observation/exterior_image_1_left"], obs.images["base"])
    else:
        assert got["images"]["cam_high"].shape == (3, 224, 224)
        np.testing.assert_array_equal(got["state"], pick(*names[:6]))
    client.close()


def test_aloha_layout_of_a_two_arm_robot_and_its_14_d_actions(serve):
    chunk = np.arange(10 * 14, dtype=np.float32).reshape(10, 14) / 100
    server, policy = serve(chunk)
    client = connect(f"openpi://{server.address}?layout=aloha")
    fit_vla(client, ALOHA, "joint")
    state = np.arange(14, dtype=np.float32)
    reply = client.infer(_obs(ALOHA, state), {"subtask": "fold the towel", "control_mode": "joint"})
    got = policy.seen[-1]
    np.testing.assert_array_equal(got["state"], state)  # left arm joints, left gripper, then the right arm
    assert set(got["images"]) == {"cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"}
    assert got["images"]["cam_high"][0, 0, 0] == 1 and got["images"]["cam_low"][0, 0, 0] == 0
    np.testing.assert_array_equal(reply["actions"], chunk)  # ALOHA's 14 absolute joints are this robot's
    client.close()


def test_layout_choices_in_the_address_and_in_a_file(robot, serve, tmp_path):
    server, policy = serve(np.zeros((10, 6)))
    description = robot.describe()
    client = connect(f"openpi://{server.address}?layout=droid&joint_position=j0_yaw,j2_elbow"
                     "&gripper_position=gripper_opening&exterior_image_1_left=wrist&wrist_image_left=base")
    fit_vla(client, description, "ee")
    obs = robot.observe()
    client.infer(obs.to_dict(), {"subtask": "go"})
    got = policy.seen[-1]
    np.testing.assert_array_equal(got["observation/joint_position"], obs.state[[0, 2]])
    np.testing.assert_array_equal(got["observation/exterior_image_1_left"], obs.images["wrist"])
    client.close()

    spec = tmp_path / "arm.json"
    spec.write_text(json.dumps({"state": ["ee_x", "ee_y", "ee_z"], "actions": "robot"}))
    client = connect(f"openpi://{server.address}?layout=libero&layout_file={spec}")
    fit_vla(client, description, "ee")
    client.infer(obs.to_dict(), {"subtask": "go"})
    np.testing.assert_array_equal(policy.seen[-1]["observation/state"], obs.state[[6, 7, 8]])
    client.close()


def test_layouts_the_robot_cannot_fill_are_one_sentence(robot, serve, tmp_path):
    server, _ = serve(np.zeros((10, 6)))
    description = robot.describe()
    for query, error, needle in [
        ("layout=droid&joints=j0", BadAddress, "The openpi droid layout has no key 'joints'; it takes"),
        ("layout=libero&actions=delta", BadAddress, "actions='delta' is not one of auto, robot, layout."),
        (f"layout=libero&layout_file={tmp_path / 'none.json'}", BadAddress, "cannot be read as JSON"),
        ("layout=droid&joint_position=elbow", VLADoesNotFit, "The robot has no state 'elbow' for 'joint_position'"),
        ("layout=libero&wrist_image=hand", VLADoesNotFit, "The robot has no camera 'hand' for 'wrist_image'"),
    ]:
        with pytest.raises(error) as caught:
            fit_vla(connect(f"openpi://{server.address}?{query}"), description, "ee")
        assert needle in str(caught.value) and "\n" not in str(caught.value)
    armless = _robot(["x", "y", "z"], {"ee": ["x", "y", "z"]}, cameras=("top",))
    with pytest.raises(VLADoesNotFit, match="The DROID layout needs the robot's joint positions"):
        fit_vla(connect(f"openpi://{server.address}?layout=droid"), armless, "ee")
    with pytest.raises(VLADoesNotFit, match="needs a wrist camera for 'wrist_image'"):
        fit_vla(connect(f"openpi://{server.address}?layout=libero"), armless, "ee")


def test_a_session_fits_the_layout_when_an_episode_starts(serve):
    """The session (every driver's) asks the client to fit the robot: a layout that cannot is one sentence."""
    from coaching.session import CoachingSession
    from coaching.settings import EpisodeSettings, SessionError
    from sim.mujoco_robot import MujocoRobot

    server, _ = serve(np.zeros((10, 6)))
    client = connect(f"openpi://{server.address}?layout=droid&gripper_position=no_such_state")
    session = CoachingSession(MujocoRobot(), client, stepped=True).start()  # the session closes its robot
    try:
        with pytest.raises(SessionError, match="The robot has no state 'no_such_state'"):
            session.start_episode(EpisodeSettings(task="Sort the blocks.", task_family="sort_blocks"), user="t")
    finally:
        session.close()


def test_libero_deltas_become_end_effector_targets(serve):
    delta = np.zeros((3, 7), np.float32)
    delta[:, 0], delta[:, 5], delta[:, 6] = 1.0, -0.5, [-1, 1, 0]  # +x, -yaw, gripper open, closed, half
    server, _ = serve(delta)
    client = connect(f"openpi://{server.address}?layout=libero&actions=layout")
    fit_vla(client, EE_ARM, "ee")
    state = np.array([0.3, 0.0, 0.2, 0.0, 0.1, 1.0, 0.04], np.float32)
    actions = client.infer(_obs(EE_ARM, state), {"subtask": "go", "control_mode": "ee"})["actions"]
    np.testing.assert_allclose(actions[:, 0], [0.35, 0.40, 0.45], atol=1e-6)  # 0.05 m per unit, summed
    np.testing.assert_allclose(actions[:, 5], [0.75, 0.5, 0.25], atol=1e-6)  # 0.5 rad per unit, summed
    np.testing.assert_allclose(actions[:, 4], 0.1, atol=1e-6)  # no pitch delta: pitch stays
    np.testing.assert_allclose(actions[:, 6], [1.0, 0.0, 0.5], atol=1e-6)  # coachlab's grip: 1 open
    client.close()


def test_droid_joint_velocities_become_joint_targets(serve):
    row = np.array([2.0, -1.0, 0, 0, 0, 0, 0.5, 0.9], np.float32)  # scaled down so no joint exceeds 1
    server, _ = serve(np.stack([row, row]))
    state = np.zeros(8, np.float32)
    auto = connect(f"openpi://{server.address}?layout=droid")  # 8 wide is also this arm's width: read as its own
    fit_vla(auto, ARM7, "joint")
    np.testing.assert_array_equal(auto.infer(_obs(ARM7, state), {"subtask": "go", "control_mode": "joint"})["actions"][0], row)
    auto.close()
    client = connect(f"openpi://{server.address}?layout=droid&actions=layout")
    fit_vla(client, ARM7, "joint")
    actions = client.infer(_obs(ARM7, state), {"subtask": "go", "control_mode": "joint"})["actions"]
    assert actions.shape == (2, 8)
    np.testing.assert_allclose(actions[:, 0], [0.2, 0.4], atol=1e-6)
    np.testing.assert_allclose(actions[:, 1], [-0.1, -0.2], atol=1e-6)
    np.testing.assert_allclose(actions[:, 6], [0.05, 0.1], atol=1e-6)
    np.testing.assert_array_equal(actions[:, 7], [0.0, 0.0])  # DROID 0.9 = closed; coachlab's grip 0 = closed
    client.close()


@pytest.mark.parametrize("layout, width, mode, needle", [
    ("libero", 7, "ee", "include pitch, which the state does not report (no ee_pitch)"),
    ("droid", 8, "joint", "are 5 joints and 1 grippers, not DROID's 7 joints and a gripper"),
    ("aloha", 14, "joint", "are 6, not ALOHA's 14"),
])
def test_layout_actions_the_sim_arm_cannot_take_are_refused(robot, serve, layout, width, mode, needle):
    server, _ = serve(np.zeros((10, width)))
    client = connect(f"openpi://{server.address}?layout={layout}")
    fit_vla(client, robot.describe(), mode)
    with pytest.raises(PolicyServerError) as refused:
        client.infer(robot.observe().to_dict(), {"subtask": "go", "control_mode": mode})
    assert refused.value.code == "bad_chunk" and needle in str(refused.value)
    assert str(refused.value).count(". ") == 0 and "so the robot holds" in str(refused.value)
    client.close()


def test_an_aloha_server_accepts_alohas_other_cameras():
    """openpi's ALOHA client sends four cameras; a coachlab server with --layout aloha takes the two it maps."""
    import websockets.sync.client

    from policy_client import msgpack_numpy
    from policy_client.echo_policy import EchoPolicy
    from policy_client.openpi_adapter import OpenPIPolicyAdapter

    server = OpenPIFormatServer(OpenPIPolicyAdapter(EchoPolicy(chunk_length=4, action_dim=14, echo_images=True),
                                                    "aloha")).start()
    image = np.zeros((3, 8, 8), np.uint8)
    request = {"images": {"cam_high": image, "cam_low": image, "cam_left_wrist": image + 1, "cam_right_wrist": image},
               "state": np.arange(14, dtype=np.float32), "prompt": "fold the towel"}
    try:
        with websockets.sync.client.connect(server.uri, compression=None, max_size=None) as ws:
            ws.recv(timeout=30)
            ws.send(msgpack_numpy.packb(request))
            reply = msgpack_numpy.unpackb(ws.recv(timeout=30))
    finally:
        server.stop()
    assert reply["actions"].shape == (4, 14) and set(reply["images"]) == {"base", "wrist"}
    assert reply["images"]["wrist"].shape == (8, 8, 3) and reply["images"]["wrist"][0, 0, 0] == 1


def test_the_client_takes_a_coachlab_servers_layout_unless_the_address_names_another():
    from policy_client import ProtocolMismatch
    from policy_client.echo_policy import EchoPolicy
    from policy_client.openpi_adapter import OpenPIPolicyAdapter

    server = OpenPIFormatServer(OpenPIPolicyAdapter(EchoPolicy(chunk_length=10, action_dim=8), "droid")).start()
    try:
        client = connect(f"openpi://{server.address}?joint_position=j1,j2,j3,j4,j5,j6,j7")  # droid's key
        fit_vla(client, ARM7, "joint")
        assert client.layout_name == "droid"
        reply = client.infer(_obs(ARM7, np.arange(8)), {"subtask": "go", "control_mode": "joint"})
        np.testing.assert_array_equal(reply["actions"][0], np.arange(8))  # joints then gripper, as the server read them
        client.close()
        with pytest.raises(ProtocolMismatch, match="reads the droid layout, not libero: give layout=droid"):
            connect(f"openpi://{server.address}?layout=libero")
    finally:
        server.stop()
