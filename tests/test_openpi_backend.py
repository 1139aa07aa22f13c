"""The openpi backend against a server that follows openpi's websocket + msgpack wire format."""

from __future__ import annotations

import socket
from typing import Any

import msgpack
import numpy as np
import pytest
import websockets.sync.client

from policy_client import BadAddress, PolicyServerError, PolicyUnreachable, connect, parse_address
from policy_client import msgpack_numpy
from policy_client.openpi_client import OpenPIPolicyClient
from policy_client.openpi_server import OpenPIFormatServer


class RecordingOpenPIPolicy:
    """An openpi-style policy (`infer(obs)`): remembers what it got, answers a 10 x 7 chunk."""

    def __init__(self):
        self.seen: list[dict[str, Any]] = []

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        if obs.get("prompt") == "explode":
            raise RuntimeError("the model ran out of memory")
        self.seen.append(obs)
        return {"actions": np.full((10, 7), len(self.seen), np.float64), "policy_timing": {"infer_ms": 1.0}}


@pytest.fixture()
def openpi_server():
    policy = RecordingOpenPIPolicy()
    server = OpenPIFormatServer(policy, metadata={"reset_pose": [0.0] * 7}).start()
    yield server, policy
    server.stop()


def _observation() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"images": {"base": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
                       "wrist": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)},
            "state": np.arange(10, dtype=np.float32), "timestamp": 0.0}


def test_msgpack_numpy_matches_openpi_encoding():
    """The bytes follow openpi's documented map layout, readable by plain msgpack."""
    packed = msgpack_numpy.packb({"a": np.arange(3, dtype=np.int32), "s": np.float32(1.5)})
    raw = msgpack.unpackb(packed, raw=False)
    assert raw["a"][b"__ndarray__"] is True and raw["a"][b"dtype"] == "<i4" and raw["a"][b"shape"] == [3]
    assert raw["a"][b"data"] == np.arange(3, dtype=np.int32).tobytes()
    assert raw["s"][b"__npgeneric__"] is True
    with pytest.raises(ValueError):
        msgpack_numpy.unpackb(msgpack.packb({b"__ndarray__": True, b"data": b"", b"dtype": "|O", b"shape": [0]}))


@pytest.mark.parametrize("layout", ["libero", "droid", "aloha"])
def test_layouts_map_cameras_state_and_prompt(openpi_server, layout):
    server, policy = openpi_server
    client = connect(f"openpi://{server.address}?layout={layout}")
    assert client.metadata == {"reset_pose": [0.0] * 7}
    obs = _observation()
    reply = client.infer(obs, {"task": "bus the table", "subtask": "pick up the cup", "control_mode": "ee"})
    assert reply["actions"].shape == (10, 7) and reply["actions"].dtype == np.float32
    assert reply["server_timing"]["infer_ms"] >= 0 and "policy_timing" in reply["info"]
    got = policy.seen[-1]
    assert got["prompt"] == "pick up the cup"
    if layout == "libero":
        np.testing.assert_array_equal(got["observation/image"], obs["images"]["base"])
        np.testing.assert_array_equal(got["observation/wrist_image"], obs["images"]["wrist"])
        np.testing.assert_array_equal(got["observation/state"], obs["state"])
    elif layout == "droid":
        np.testing.assert_array_equal(got["observation/exterior_image_1_left"], obs["images"]["base"])
        np.testing.assert_array_equal(got["observation/joint_position"], obs["state"][:5])
        np.testing.assert_array_equal(got["observation/gripper_position"], obs["state"][5:6])
    else:
        assert got["images"]["cam_high"].shape == (3, 224, 224)
        np.testing.assert_array_equal(got["images"]["cam_left_wrist"], obs["images"]["wrist"].transpose(2, 0, 1))
    client.close()


def test_server_error_is_reported_and_the_client_reconnects(openpi_server):
    server, _ = openpi_server
    client = OpenPIPolicyClient(server.address)
    with pytest.raises(PolicyServerError, match="ran out of memory"):
        client.infer(_observation(), {"subtask": "explode"})
    assert client.infer(_observation(), {"subtask": "carry on"})["actions"].shape == (10, 7)
    client.close()


def test_server_sees_the_openpi_handshake(openpi_server):
    """A plain websocket client gets the metadata frame first, as openpi's own client expects."""
    server, _ = openpi_server
    with websockets.sync.client.connect(f"ws://{server.address}", compression=None, max_size=None) as ws:
        assert msgpack_numpy.unpackb(ws.recv(timeout=5)) == {"reset_pose": [0.0] * 7}


def test_unreachable_openpi_server_and_bad_addresses():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PolicyUnreachable, match="No openpi policy server"):
        OpenPIPolicyClient(f"127.0.0.1:{port}", timeout_s=1)
    with pytest.raises(ValueError, match="Unknown openpi layout"):
        OpenPIPolicyClient("127.0.0.1:1", layout="nosuch", handshake=False)
    for bad in ["", "localhost", "http://x:1", "zmq://host", "zmq://host:notaport"]:
        with pytest.raises(BadAddress, match="zmq://host:port or openpi://host:port"):
            parse_address(bad)
    assert parse_address("openpi://gpu-box:8000?layout=droid") == ("openpi", "gpu-box:8000", {"layout": "droid"})


class FixedWidthOpenPIPolicy:
    """An openpi-style policy for some other robot: a 10 x `width` chunk of the home pose plus padding."""

    def __init__(self, width: int):
        self.width = width

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        row = np.array([0.3, 0.0, 0.25, 0.0, 0.0, 1.0, 0.0, 0.0], np.float64)[: self.width]
        return {"actions": np.tile(row, (10, 1))}


@pytest.mark.parametrize("width", [7, 4])
@pytest.mark.parametrize("prefetch", [False, True])
def test_wrong_width_chunks_are_refused_on_every_reply(width, prefetch):
    """Issue 22 fault 6: an openpi server answering 7-d actions for the 6-d sim arm was executed (index 5
    read as the gripper) and 4-d ones crashed with an IndexError. The loop must refuse every such reply
    in one sentence and hold the real sim robot still."""
    import time

    from coaching.clock import SimClock
    from coaching.control_loop import ControlLoop
    from policy_client import ChunkingConfig
    from sim.mujoco_robot import MujocoRobot

    server = OpenPIFormatServer(FixedWidthOpenPIPolicy(width)).start()
    robot = MujocoRobot()
    errors: list[str] = []
    steps: list[Any] = []
    loop = ControlLoop(robot, OpenPIPolicyClient(server.address, timeout_s=5),
                       ChunkingConfig(prefetch=prefetch), SimClock(lambda: robot.data.time),
                       on_step=lambda obs, action, seg: steps.append(action), on_error=errors.append,
                       idle_reset=("sort_blocks", 0), stepped=True)
    try:
        loop.start()
        before = robot.proprio().copy()

        class Segment:
            id, first_action_wall = 1, None

        def begin(state):
            state.subtask, state.prompt = Segment(), {"task": "sort", "subtask": "pick up the red block"}
            state.chunker.new_subtask()

        loop.submit(begin)
        refusals = []
        for _ in range(6):
            try:
                loop.step()
            except PolicyServerError as e:
                refusals.append(e)
            if prefetch:
                time.sleep(0.05)  # let the prefetched reply land before the next tick
        assert refusals, "a wrong-width chunk was accepted"
        assert all(e.code == "bad_chunk" for e in refusals)
        assert f"sent {width}-wide actions" in str(refusals[0])
        assert "this robot takes 6 in ee mode (x, y, z, yaw, pitch, grip)" in str(refusals[0])
        assert all(a is None for a in steps)  # nothing of any chunk was executed: every tick held
        assert np.abs(robot.proprio()[:5] - before[:5]).max() < 0.01
    finally:
        loop.stop()
        server.stop()
