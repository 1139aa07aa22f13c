"""`coachlab vla-server --format openpi`: a coachlab policy served on openpi's websocket wire.

openpi's own `WebsocketClientPolicy` (openpi-client from PyPI, in its own cached environment since it
pins numpy below 2: bench/openpi_client_env.py) drives the real sim skill policy through a real
`coachlab vla-server --format openpi` process; raw websockets clients check the frames byte for byte
(metadata on connect, msgpack-numpy replies, a text frame and close 1011 for a bad request,
`GET /healthz`); coachlab's own openpi client sends an API key and reaches a TLS server as `wss://`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from typing import Any

import msgpack
import numpy as np
import pytest
import websockets.exceptions
import websockets.sync.client

from policy_client import PolicyServerError, PolicyUnreachable, connect, msgpack_numpy
from policy_client.chunk_check import check_chunk
from policy_client.curve import InsecureBind
from policy_client.echo_policy import EchoPolicy
from policy_client.openpi_adapter import OpenPIPolicyAdapter
from policy_client.openpi_server import CLOSE_REASON, OpenPIFormatServer


def _libero_request(obs: Any, subtask: str, **coachlab_keys: Any) -> dict[str, Any]:
    """What a LIBERO-style openpi client sends, plus coachlab's optional keys."""
    return {"observation/image": obs.images["base"], "observation/wrist_image": obs.images["wrist"],
            "observation/state": obs.state, "prompt": subtask, **coachlab_keys}


def _first_block(env_state: dict[str, Any]) -> str:
    name, item = next(iter(env_state["objects"].items()))
    return f"pick up the {item['colour']} {item['kind']}"


@contextlib.contextmanager
def _port_in_use():
    """A loopback port something listens on, for the duration of a with block."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


class _StderrWatch:
    """Reads a child's stderr on a thread (a pipe nobody reads would block it) and finds its address."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self.found = threading.Event()
        self.uri: str | None = None
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self.lines.append(line)
            match = re.search(r" at (wss?://\S+)", line)
            if match and self.uri is None:
                self.uri = match.group(1)
                self.found.set()
        self.found.set()


@pytest.fixture()
def echo_server():
    """An EchoPolicy (10 x 6 chunks from the state) served in openpi's format on a free loopback port."""
    server = OpenPIFormatServer(OpenPIPolicyAdapter(EchoPolicy(chunk_length=10, action_dim=6))).start()
    yield server
    server.stop()


def _state_request(state: np.ndarray, subtask: str = "pick up the red block") -> dict[str, Any]:
    image = np.zeros((8, 8, 3), np.uint8)
    return {"observation/image": image, "observation/wrist_image": image, "observation/state": state, "prompt": subtask}


def test_official_client_drives_the_sim_skill_policy_through_vla_server(robot):
    """openpi's WebsocketClientPolicy against a real `coachlab vla-server --format openpi`: metadata on
    connect, three chunks of the sim skill policy executed on the sim robot, a refused request raised as
    openpi raises a server's text frame, then Ctrl+C and the JSON report."""
    from bench.openpi_client_env import OfficialClient, OfficialClientError

    process = subprocess.Popen([sys.executable, "-m", "app.cli", "vla-server", "--format", "openpi", "--port", "0",
                                "--options", json.dumps({"noise": 0.0}), "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = _StderrWatch(process)
    try:
        assert watch.found.wait(180) and watch.uri, "".join(watch.lines)
        assert watch.uri.startswith("ws://127.0.0.1:")
        host_port = watch.uri.removeprefix("ws://")
        health = http.client.HTTPConnection(host_port, timeout=30)
        health.request("GET", "/healthz")
        response = health.getresponse()
        assert (response.status, response.read()) == (200, b"OK\n")
        health.close()

        obs = robot.reset("sort_blocks", 0)
        subtask = _first_block(obs.env_state)
        start = robot.proprio().copy()
        with OfficialClient(watch.uri) as client:
            assert client.metadata["name"] == "coachlab-sim-skill-policy"
            assert client.metadata["action_dim"] == 6 and client.metadata["coachlab"]["layout"] == "libero"
            for step in range(3):
                reply = client.infer(_libero_request(obs, subtask, env_state=obs.env_state, task="Sort the blocks.",
                                                     episode=1, segment=0, control_mode="ee"))
                actions = reply["actions"]
                assert actions.dtype == np.float32 and actions.shape == (10, 6)
                assert reply["skill"] == "pick" and not reply.get("refused")
                assert reply["server_timing"]["infer_ms"] >= 0
                assert ("prev_total_ms" in reply["server_timing"]) == (step > 0)
                for action in actions:
                    robot.act(action, "ee")
                obs = robot.observe()
            assert np.abs(robot.proprio()[6:9] - start[6:9]).max() > 0.01, "the arm did not move toward the block"

            request = _libero_request(obs, subtask)
            del request["observation/wrist_image"]
            with pytest.raises(OfficialClientError) as refused:
                client.infer(request)
            assert refused.value.kind == "RuntimeError"
            assert "Error in inference server:\nThe request lacks 'observation/wrist_image'" in str(refused.value)
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    report = json.loads(out)
    assert report["format"] == "openpi" and report["served"] == 3 and report["errors"] == 1


def test_official_client_sends_the_api_key():
    """A server with an API key refuses openpi's client without it (HTTP 401) and serves it with it."""
    from bench.openpi_client_env import OfficialClient, OfficialClientError

    keyed = OpenPIFormatServer(OpenPIPolicyAdapter(EchoPolicy(chunk_length=10, action_dim=6)), api_key="s3cret").start()
    try:
        with pytest.raises(OfficialClientError, match="HTTP 401"):
            OfficialClient(keyed.uri)
        with OfficialClient(keyed.uri, api_key="s3cret") as client:
            reply = client.infer(_state_request(np.arange(6, dtype=np.float32)))
        np.testing.assert_array_equal(reply["actions"][0], np.arange(6, dtype=np.float32))
    finally:
        keyed.stop()


def test_frames_byte_for_byte(echo_server):
    """The metadata frame and each reply are openpi's msgpack-numpy maps, readable by plain msgpack."""
    adapter = echo_server.policy
    with websockets.sync.client.connect(echo_server.uri, compression=None, max_size=None) as ws:
        first = ws.recv(timeout=30)
        assert isinstance(first, bytes) and first == msgpack_numpy.packb(adapter.metadata)
        state = np.array([0.5, -1, 2, 3, 4, 5, 6, 7, 8, 9], np.float32)
        ws.send(msgpack_numpy.packb(_state_request(state)))
        reply = msgpack.unpackb(ws.recv(timeout=30), raw=False)
    expected = np.zeros(6, np.float32) + state[:6] + np.arange(10, dtype=np.float32)[:, None]
    assert reply["actions"] == {b"__ndarray__": True, b"data": expected.tobytes(), b"dtype": "<f4", b"shape": [10, 6]}
    assert reply["subtask"] == "pick up the red block" and set(reply["server_timing"]) == {"infer_ms"}


@pytest.mark.parametrize("frame, sentence", ids=["not-msgpack", "text-frame", "not-a-map", "unknown-key", "2d-image",
                                                 "no-prompt"], argvalues=[
    (b"\xc1not msgpack", "The request is not msgpack in openpi's numpy encoding"),
    ("a text frame", "The request came as a text frame; send the observation as one binary msgpack frame"),
    (msgpack_numpy.packb([1, 2]), "An openpi request must be a map of keys to values, not list."),
    (msgpack_numpy.packb({**_state_request(np.zeros(10, np.float32)), "observation/joint_position": np.zeros(5)}),
     "The request has the key 'observation/joint_position', which the libero layout does not use; send "
     "observation/image, observation/wrist_image, observation/state, prompt"),
    (msgpack_numpy.packb({**_state_request(np.zeros(10, np.float32)), "observation/image": np.zeros((8, 8), np.uint8)}),
     "'observation/image' must be a H x W x 3 uint8 image in the libero layout, not a uint8 array of shape (8, 8)."),
    (msgpack_numpy.packb({k: v for k, v in _state_request(np.zeros(10, np.float32)).items() if k != "prompt"}),
     "The request has no 'prompt' text; send the subtask under 'prompt'."),
])
def test_bad_requests_get_one_sentence_in_a_text_frame_then_1011(echo_server, frame, sentence):
    with websockets.sync.client.connect(echo_server.uri, compression=None, max_size=None) as ws:
        ws.recv(timeout=30)
        ws.send(frame)
        text = ws.recv(timeout=30)
        assert isinstance(text, str) and text.startswith(sentence) and "\n" not in text.strip()
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd.code == 1011 and closed.value.rcvd.reason == CLOSE_REASON
    client = connect(f"openpi://{echo_server.address}")  # the server keeps serving other connections
    assert client.infer({"images": {"base": np.zeros((8, 8, 3), np.uint8), "wrist": np.zeros((8, 8, 3), np.uint8)},
                         "state": np.ones(10, np.float32)}, {"subtask": "go"})["actions"].shape == (10, 6)
    client.close()


def test_coachlab_client_drives_the_sim_policy_and_refuses_a_wrong_width_chunk(robot, policy):
    """coachlab's openpi client against a coachlab server sends the sim's env_state (its metadata says the
    policy needs it); a policy for another robot (7-wide actions) is refused in one sentence."""
    server = OpenPIFormatServer(OpenPIPolicyAdapter(policy)).start()
    try:
        client = connect(f"openpi://{server.address}", timeout_s=30)
        obs = robot.reset("sort_blocks", 0)
        reply = client.infer(obs.to_dict(), {"task": "Sort the blocks.", "subtask": _first_block(obs.env_state),
                                             "control_mode": "ee", "episode": 7, "segment": 0})
        assert reply["info"]["skill"] == "pick"
        names = robot.describe().action_names["ee"]
        assert check_chunk(reply["actions"], names, "ee").shape == (10, 6)
        client.close()
    finally:
        server.stop()
    wide = OpenPIFormatServer(OpenPIPolicyAdapter(EchoPolicy(chunk_length=10, action_dim=7))).start()
    try:
        client = connect(f"openpi://{wide.address}")
        reply = client.infer(obs.to_dict(), {"subtask": "pick up the red block"})
        with pytest.raises(PolicyServerError, match=r"The VLA sent 7-wide actions .* this robot takes 6 in ee mode") as e:
            check_chunk(reply["actions"], names, "ee")
        assert e.value.code == "bad_chunk"
        client.close()
    finally:
        wide.stop()


class _NoActionsPolicy:
    def infer(self, observation, prompt):
        return {"info": {}}


def test_a_policy_without_actions_and_a_server_that_dies(echo_server):
    broken = OpenPIFormatServer(OpenPIPolicyAdapter(_NoActionsPolicy())).start()
    obs = {"images": {"base": np.zeros((8, 8, 3), np.uint8), "wrist": np.zeros((8, 8, 3), np.uint8)},
           "state": np.zeros(10, np.float32)}
    try:
        client = connect(f"openpi://{broken.address}")
        with pytest.raises(PolicyServerError, match="The policy failed: PolicyReplyError: The policy returned no 'actions'"):
            client.infer(obs, {"subtask": "go"})
        client.close()
    finally:
        broken.stop()
    client = connect(f"openpi://{echo_server.address}")
    assert client.infer(obs, {"subtask": "go"})["actions"].shape == (10, 6)
    echo_server.stop()  # the server goes away under a connected client
    with pytest.raises(PolicyUnreachable):
        client.infer(obs, {"subtask": "go"})
    client.close()


def test_api_key_healthz_and_loopback_rule():
    keyed = OpenPIFormatServer(OpenPIPolicyAdapter(EchoPolicy(chunk_length=10, action_dim=6)), api_key="s3cret").start()
    try:
        with pytest.raises(PolicyUnreachable, match="refused the connection with HTTP 401; pass its API key"):
            connect(f"openpi://{keyed.address}")
        with pytest.raises(PolicyUnreachable, match="HTTP 401"):
            connect(f"openpi://{keyed.address}", api_key="wrong")
        assert connect(f"openpi://{keyed.address}", api_key="s3cret").metadata["coachlab"]["format"] == "openpi"
        health = http.client.HTTPConnection(keyed.address, timeout=30)  # no key needed to probe health
        health.request("GET", "/healthz")
        assert health.getresponse().status == 200
        health.close()
    finally:
        keyed.stop()
    with pytest.raises(InsecureBind, match="without an API key"):
        OpenPIFormatServer(EchoPolicy(), host="0.0.0.0")


def test_wss_address_reaches_a_tls_server(tmp_path, monkeypatch):
    """`wss://` connects over TLS, verifying the server's certificate (here a self-signed one made for
    the test and trusted through $SSL_CERT_FILE, as a lab would trust its own CA)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                           "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                           "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = OpenPIFormatServer(OpenPIPolicyAdapter(EchoPolicy(chunk_length=10, action_dim=6)),
                                ssl_context=context).start()
    obs = {"images": {"base": np.zeros((8, 8, 3), np.uint8), "wrist": np.zeros((8, 8, 3), np.uint8)},
           "state": np.arange(10, dtype=np.float32)}
    try:
        assert server.uri.startswith("wss://")
        with pytest.raises(PolicyUnreachable, match="certificate"):
            connect(f"wss://localhost:{server.port}", timeout_s=10)  # not trusted yet
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        client = connect(f"wss://localhost:{server.port}/any/path?layout=libero", timeout_s=10)
        assert client.uri == f"wss://localhost:{server.port}/any/path"
        np.testing.assert_array_equal(client.infer(obs, {"subtask": "go"})["actions"][0], np.arange(6))
        client.close()
        with pytest.raises(PolicyUnreachable, match="No openpi policy server"):
            connect(f"ws://localhost:{server.port}", timeout_s=10)  # plain ws to a TLS port
    finally:
        server.stop()


def test_vla_server_bad_input_is_one_sentence(tmp_path, capsys, monkeypatch):
    from app.cli import main
    from support import free_port

    monkeypatch.delenv("COACHLAB_KEYS", raising=False)
    monkeypatch.delenv("COACHLAB_VLA_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["vla-server", "--format", "grpc"])
    assert exited.value.code == 2 and "invalid choice: 'grpc' (choose from 'zmq', 'openpi')" in capsys.readouterr().err
    with _port_in_use() as taken:
        cases = [(["--format", "openpi", "--layout", "rt1"], "Unknown openpi layout 'rt1'; choose one of libero, droid, aloha."),
                 (["--format", "openpi", "--host", "0.0.0.0", "--port", str(free_port())], "without an API key"),
                 (["--format", "openpi", "--keys", str(tmp_path)], "openpi's format has no CURVE keys"),
                 (["--api-key", "k"], "--api-key and --layout belong to --format openpi"),
                 (["--format", "openpi", "--port", str(taken)], f"Port {taken} on 127.0.0.1 is already in use")]
        for args, needle in cases:
            assert main(["vla-server", *args]) == 2
            err = capsys.readouterr().err
            assert needle in err and err.count("\n") == 1, err

