"""The ZMQ wire on real loopback sockets: handshake, exact round trips, restarts, kills, bad frames, many clients."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import zmq

from policy_client import (ActionChunker, ChunkingConfig, PolicyServer, PolicyServerError, PolicyTimeout,
                           PolicyUnreachable, ProtocolMismatch, ServerConfig, connect, protocol)
from policy_client.echo_policy import EchoPolicy
from policy_client.local_server import LocalPolicyServer
from policy_client.protocol import Message
from policy_client.zmq_client import ZmqPolicyClient
from support import free_port

ECHO = "policy_client.echo_policy:from_options"


def _observation(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": {"base": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
                       "wrist": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)},
            "state": rng.normal(size=14).astype(np.float32), "timestamp": 1.5}


@pytest.fixture()
def echo_server():
    server = PolicyServer(EchoPolicy(echo_images=True), "tcp://127.0.0.1:0").start()
    yield server
    server.stop()


def test_handshake_reports_what_the_server_serves(echo_server):
    client = ZmqPolicyClient(echo_server.address)
    hello = client.server_hello
    assert hello["protocol"] == protocol.PROTOCOL_VERSION
    assert (hello["policy"], hello["action_dim"], hello["chunk_length"]) == ("echo", 14, 50)
    assert set(hello["control_modes"]) == {"ee", "joint"}
    assert client.ping() < 1000
    client.close()


def test_infer_round_trip_is_exact(echo_server):
    client = ZmqPolicyClient(echo_server.address)
    obs = _observation()
    obs["extra"] = {"mask": np.array([True, False]), "depth": np.arange(12, dtype=np.float64).reshape(3, 4)}
    prompt = {"task": "bus the table", "subtask": "pick up the 'red' cup; DROP TABLE -- \U0001f964",
              "metadata": {"speed": "slow", "quality": 5}, "control_mode": "ee",
              "subgoal_images": {"base": obs["images"]["base"][::2, ::2]}}
    reply = client.infer(obs, prompt)
    assert reply["actions"].dtype == np.float32 and reply["actions"].shape == (50, 14)
    np.testing.assert_array_equal(reply["actions"][0], obs["state"])
    for cam, image in obs["images"].items():
        assert reply["info"]["images"][cam].dtype == np.uint8
        np.testing.assert_array_equal(reply["info"]["images"][cam], image)
    assert reply["info"]["subtask"] == prompt["subtask"]
    assert reply["server_timing"]["infer_ms"] >= 0
    client.reset(3)
    assert client.infer(obs, prompt)["info"]["resets"] == 1
    client.close()


def test_malformed_frames_get_error_replies_and_the_server_keeps_serving(echo_server):
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.DEALER)
    raw.connect(echo_server.address)
    header = lambda **kw: json.dumps({"v": 1, "kind": "infer", "id": 7, "body": {}, "arrays": [], **kw}).encode()
    bad_messages = {
        "not json": [b"\xff\x00 not json"],
        "missing frame": [header(arrays=[{"dtype": "|u1", "shape": [4]}])],
        "object dtype": [header(arrays=[{"dtype": "|O", "shape": [1]}]), b"\x00" * 8],
        "wrong size": [header(arrays=[{"dtype": "<f4", "shape": [3]}]), b"\x00" * 5],
        "dangling ref": [header(body={"observation": {"__array__": 3}, "prompt": {}})],
        "unknown kind": [header(kind="launch")],
        "no observation": [header()],
        "deep nesting": [b'{"v":1,"kind":"infer","id":7,"body":' + b"[" * 100000 + b"]" * 100000 + b"}"],
    }
    for name, frames in bad_messages.items():
        raw.send_multipart(frames)
        assert raw.poll(5000), f"no reply to {name}"
        reply = protocol.decode(raw.recv_multipart())
        assert reply.kind == "error" and reply.body["message"], name
    raw.close(linger=0)
    client = ZmqPolicyClient(echo_server.address)
    assert client.infer(_observation(), {"subtask": "still fine"})["info"]["subtask"] == "still fine"
    assert echo_server.errors == len(bad_messages)
    client.close()


def test_oversized_request_is_refused_and_the_server_survives():
    server = PolicyServer(EchoPolicy(), "tcp://127.0.0.1:0", ServerConfig(max_request_bytes=1 << 20)).start()
    try:
        client = ZmqPolicyClient(server.address)
        huge = {"images": {"base": np.zeros((1024, 1024, 3), np.uint8)}, "state": np.zeros(14, np.float32)}
        with pytest.raises(PolicyServerError, match="over this server's limit") as err:
            client.infer(huge, {"subtask": "x"})
        assert err.value.code == "too_large"
        assert client.infer(_observation(), {"subtask": "ok"})["actions"].shape == (50, 14)
        client.close()
    finally:
        server.stop()


def test_protocol_version_mismatch_is_a_clear_error(echo_server):
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.connect(echo_server.address)
    raw.send_multipart(protocol.encode(Message("hello", 1, {}, version=99)))
    assert raw.poll(5000)
    reply = protocol.decode(raw.recv_multipart())
    assert reply.body["code"] == "protocol_mismatch" and "upgrade" in reply.body["message"]
    raw.close(linger=0)

    # a newer server: its replies carry a version this client does not speak
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def newer_server():
        if router.poll(5000):
            ident, *frames = router.recv_multipart()
            request = protocol.decode(frames)
            router.send_multipart([ident, *protocol.encode(Message("hello", request.id, {"protocol": 2}, version=2))])

    thread = threading.Thread(target=newer_server)
    thread.start()
    with pytest.raises(ProtocolMismatch, match="protocol"):
        ZmqPolicyClient(f"tcp://127.0.0.1:{port}", timeout_s=3)
    thread.join()
    router.close(linger=0)


def test_unreachable_server_is_reported_within_the_timeout():
    start = time.perf_counter()
    with pytest.raises(PolicyUnreachable, match="coachlab vla-server"):
        ZmqPolicyClient(f"tcp://127.0.0.1:{free_port()}", timeout_s=0.5)
    assert time.perf_counter() - start < 2.0


def test_stale_reply_of_a_timed_out_request_is_discarded(echo_server):
    client = ZmqPolicyClient(echo_server.address, timeout_s=0.3)
    slow = _observation(1)
    with pytest.raises(PolicyTimeout, match="did not answer within 0.3 s"):
        client.infer(slow, {"subtask": "slow", "delay_s": 0.8})
    fast = _observation(2)
    reply = client.infer(fast, {"subtask": "fast"}, timeout_s=5)
    assert reply["info"]["subtask"] == "fast"
    np.testing.assert_array_equal(reply["actions"][0], fast["state"])
    client.close()


def test_a_server_that_crashes_at_start_says_so_at_once():
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"exited at start with code 1.*coachlab vla-server"):
        LocalPolicyServer("no_such_module:factory", start_timeout_s=60)
    assert time.perf_counter() - start < 30  # not the 60 s start timeout


def test_a_policy_that_prints_keeps_serving(capfd):
    """What a policy prints reaches the terminal, before it is ready and after: an unread pipe would fill
    (64 KiB) and block the server at its next print."""
    server = LocalPolicyServer("tests.support:chatty_echo_policy", {"lines": 5000})
    try:
        client = ZmqPolicyClient(server.address, timeout_s=5.0)
        for i in range(20):  # each request prints 5000 lines (about 150 KiB), more than a pipe holds
            assert client.infer(_observation(), {"subtask": f"s{i}"})["info"]["subtask"] == f"s{i}"
        client.close()
    finally:
        server.close()
    out = capfd.readouterr().out
    assert "loading the chatty policy" in out and out.count("chatty reply") == 20 * 5000


def test_client_survives_a_server_restart_on_the_same_port():
    address = f"tcp://127.0.0.1:{free_port()}"
    server = LocalPolicyServer(ECHO, address=address)
    client = ZmqPolicyClient(address, timeout_s=1.0)
    assert client.infer(_observation(), {"subtask": "before"})["info"]["subtask"] == "before"
    server.process.kill()
    server.close()
    start = time.perf_counter()
    with pytest.raises((PolicyTimeout, PolicyUnreachable)):
        client.infer(_observation(), {"subtask": "while down"})
    assert time.perf_counter() - start < 2.0  # within the timeout, no hang
    server = LocalPolicyServer(ECHO, address=address)
    try:
        assert client.infer(_observation(), {"subtask": "after"}, timeout_s=5)["info"]["subtask"] == "after"
    finally:
        client.close()
        server.close()


def test_many_clients_at_once_each_get_their_own_replies(echo_server):
    errors: list[str] = []

    def worker(k: int) -> None:
        client = ZmqPolicyClient(echo_server.address)
        for i in range(40):
            obs = {"images": {}, "state": np.full(14, k * 1000 + i, np.float32)}
            reply = client.infer(obs, {"subtask": f"{k}-{i}"})
            if reply["info"]["subtask"] != f"{k}-{i}" or reply["actions"][0, 0] != k * 1000 + i:
                errors.append(f"client {k} request {i} got someone else's reply")
        client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert echo_server.served >= 8 * 41  # 40 requests + a handshake each


def test_chunker_executes_open_loop_then_replans(echo_server):
    client = ZmqPolicyClient(echo_server.address)
    chunker = ActionChunker(client, ChunkingConfig(replan_after=3))
    obs = {"images": {}, "state": np.zeros(14, np.float32)}
    firsts = [chunker.step(obs, {"subtask": "a"})[0] for _ in range(7)]
    assert firsts == [0, 1, 2, 0, 1, 2, 0]  # each chunk counts up from the state; a new one every 3 steps
    assert chunker.chunks_received == 3
    client.close()


def test_prefetch_skips_steps_run_in_flight_and_drops_replies_for_an_old_subtask(echo_server):
    client = ZmqPolicyClient(echo_server.address)
    chunker = ActionChunker(client, ChunkingConfig(replan_after=5, prefetch=True, prefetch_lead=2))
    obs = {"images": {}, "state": np.zeros(14, np.float32)}
    slow = {"subtask": "slow", "delay_s": 0.3}
    assert chunker.step(obs, slow) is None  # nothing yet: hold, never block
    time.sleep(0.5)
    first = chunker.step(obs, slow)
    assert first is not None and first[0] == 0  # the robot held while it flew: nothing of the chunk is skipped
    for _ in range(2):
        chunker.step(obs, slow)  # executes actions 1 and 2; the next request goes out now
    time.sleep(0.1)
    executed = [chunker.step(obs, slow)[0] for _ in range(2)]  # actions 3, 4 run while it flies
    time.sleep(0.5)
    fresh = chunker.step(obs, slow)
    assert executed == [3, 4] and fresh[0] == 2  # the fresh chunk skips the two actions run meanwhile
    chunker.new_subtask()
    assert chunker.step(obs, {"subtask": "new", "delay_s": 0.3}) is None
    chunker.new_subtask()  # changed again before that reply came back
    time.sleep(0.5)
    assert chunker.step(obs, {"subtask": "newest"}) is None  # the reply for "new" was discarded
    time.sleep(0.3)
    chunker.step(obs, {"subtask": "newest"})
    assert chunker.last_info["subtask"] == "newest"
    chunker.close()
    client.close()


def test_robot_holds_when_the_server_is_killed(robot):
    server = LocalPolicyServer("sim.skill_policy:from_options", {"noise": 0.0})
    client = connect(server.zmq_address, timeout_s=0.5)
    chunker = ActionChunker(client, ChunkingConfig(replan_after=5, prefetch=True))
    obs = robot.reset("sort_blocks", 0)
    block = next(name for name, o in obs.env_state["objects"].items())
    prompt = {"task": "sort", "subtask": f"pick up the {block.replace('_', ' ')}", "control_mode": "ee"}
    client.infer(obs.to_dict(), prompt, timeout_s=30)  # warm-up: the first call loads the sentence encoder
    moved = 0
    for _ in range(30):
        action = chunker.step(obs.to_dict(), prompt)
        robot.hold() if action is None else robot.act(action, "ee")
        moved += action is not None
        obs = robot.observe()
        time.sleep(0.02)
    assert moved > 10, chunker.last_error
    server.process.kill()
    server.close()
    held = 0
    start = time.perf_counter()
    while time.perf_counter() - start < 2.0:
        action = chunker.step(obs.to_dict(), prompt)
        if action is None:
            robot.hold()
            held += 1
            before = robot.observe().state.copy()
        else:
            robot.act(action, "ee")
        obs = robot.observe()
        time.sleep(0.02)
    assert held > 20 and isinstance(chunker.last_error, (PolicyTimeout, PolicyUnreachable))
    assert np.abs(obs.state[6:9] - before[6:9]).max() < 2e-3  # the hand stays put
    chunker.close()
    client.close()
