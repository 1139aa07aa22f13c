"""Benchmark: malformed, truncated, oversized and random messages at the VLA server and the robot
bridge (issue 22's figure). Both run as their real `coachlab` processes on loopback.

Each server gets `messages` messages: a tenth (at most `HYPOTHESIS_MAX`) are drawn by hypothesis (well-framed messages whose
header, kinds, ids, bodies and arrays are arbitrary: wrong versions, unknown kinds, NaN, nesting,
arrays of any dtype and shape, random observations, actions and seeds), the rest are raw frames
made with numpy: random bytes, valid messages cut short, array frames that do not match their
declared shape or dtype, JSON that is not an object or nests too deep, empty frames, headers over
the 1 MiB limit and, rarely (they are 64 MiB each), requests over the 64 MiB limit. Every
`probe_every` messages a separate client sends a well-formed ping and must get its pong; at the
end every well-formed request each server serves must still be answered. `server_deaths` counts
the times a server process was found dead (it is then restarted, so the run goes on): must be 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zmq
from tqdm import tqdm

from policy_client import protocol
from policy_client.protocol import Message

REPO = Path(__file__).resolve().parents[1]
SERVERS = {  # name -> (command, kinds it serves)
    "vla_server": (["vla-server", "--policy", "policy_client.echo_policy:from_options", "--options",
                    '{"action_dim": 6, "chunk_length": 10}'], ("hello", "infer", "reset", "ping")),
    "robot_bridge": (["robot-server"], ("describe", "reset", "observe", "act", "hold", "ping")),
}
BIG_EVERY = 100_000  # one request over the 64 MiB limit per this many messages (and at least one per run)


def run(messages: int = 1_000_000, seed: int = 0, probe_every: int = 1000) -> dict:
    """`messages` bad messages at each server; see the module docstring for the figures."""
    result: dict[str, Any] = {"messages": messages, "server_deaths": 0}
    for name, (command, kinds) in SERVERS.items():
        with _Server(command) as server:
            stats = _fuzz(server, kinds, messages, seed, probe_every)
            stats["answered_after"] = _well_formed_requests(server.address, name)
            stats["alive_after"] = server.alive()
        result["server_deaths"] += stats.pop("deaths")
        result[name] = stats
    return result


class _Server:
    """A `coachlab` server process on a free loopback port; `restart()` after a death."""

    def __init__(self, command: list[str]):
        self.command = command
        self.address = ""

    def __enter__(self) -> "_Server":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "app.cli", *self.command, "--port", "0"], cwd=REPO,
                                        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        line = self.process.stderr.readline()  # "... at zmq://127.0.0.1:PORT (Ctrl+C stops)"
        if " at zmq://" not in line:
            raise RuntimeError(f"the server did not start: {line}{self.process.stderr.read()[-2000:]}")
        self.address = "tcp://" + line.split(" at zmq://")[1].split()[0].rstrip(",")
        # its log of each bad request (a policy that raised) must not fill an unread pipe
        subprocess.Popen(["cat"], stdin=self.process.stderr, stdout=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.process.poll() is None


# -- the messages -----------------------------------------------------------------------------
def _raw_message(rng: np.random.Generator, i: int, kinds: tuple[str, ...]) -> list[bytes]:
    """One message of raw frames, cycling through the kinds of damage."""
    kind = str(rng.choice(kinds))
    valid = protocol.encode(Message(kind, int(rng.integers(1 << 31)), {
        "observation": {"images": {"base": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)},
                        "state": rng.normal(size=6).astype(np.float32), "timestamp": 0.0},
        "prompt": {"task": "t", "subtask": "s"}, "action": rng.normal(size=6), "mode": "ee"}))
    valid = [bytes(f) for f in valid]
    damage = i % 8
    if damage == 0:  # random bytes in 1-4 frames
        return [rng.bytes(int(rng.integers(0, 2000))) for _ in range(int(rng.integers(1, 5)))]
    if damage == 1:  # a valid message cut short: its header, or one of its array frames
        k = int(rng.integers(len(valid)))
        cut = valid[:k + 1]
        cut[k] = cut[k][:int(rng.integers(len(cut[k]) + 1))]
        return cut
    if damage == 2:  # arrays that do not match their declared dtype and shape, or too few/many frames
        header = json.loads(valid[0])
        for spec in header["arrays"]:
            spec["shape"] = [int(rng.integers(-2, 50)) for _ in range(int(rng.integers(0, 4)))]
            spec["dtype"] = str(rng.choice(["|O", "<U8", "|V4", "<f4", "|u1", "bogus", "<c16"]))
        frames = [json.dumps(header).encode()] + valid[1:]
        return frames[:int(rng.integers(1, len(frames) + 2))] if rng.random() < 0.3 else frames
    if damage == 3:  # JSON that is not an object, or nests far too deep
        depth = int(rng.integers(1, 100_000))
        return [rng.choice([b"[]", b"null", b"42", b'"infer"', b"{}", b"[" * depth + b"]" * depth,
                            b'{"v":1,"kind":"infer","id":1,"body":' + b"[" * depth + b"]" * depth + b"}"])]
    if damage == 4:  # a header over the 1 MiB limit
        return [b'{"v":1,"kind":"ping","id":1,"body":{"x":"' + b"a" * (1 << 20) + b'"}}']
    if damage == 5:  # a wrong version, an unknown kind, a bad id or body, references to no frame
        return [json.dumps(rng.choice([
            {"v": 2, "kind": kind, "id": 1, "body": {}}, {"v": 1, "kind": "rm -rf", "id": 1},
            {"v": 1, "kind": kind, "id": "one", "body": []}, {"v": 1, "kind": kind, "id": 1, "body": {"a": {"__array__": 7}}},
            {"v": 1.0, "kind": kind, "id": 1}, {"v": 1, "kind": "x" * 100, "id": 1},
        ])).encode()]
    if damage == 6:  # an empty frame, or frames of nothing but zeros
        return [b""] * int(rng.integers(1, 4))
    return valid  # a well-formed request with random content (actions out of range, NaN-free noise)


def _hypothesis_messages(kinds: tuple[str, ...]):
    """A hypothesis strategy of framed messages: [header bytes, array bytes...], arbitrary content."""
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import array_shapes, arrays

    dtypes = st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.bool_, np.float16])
    array = arrays(dtypes, array_shapes(min_dims=0, max_dims=3, max_side=12))
    leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16) | array
    value = st.recursive(leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                         max_leaves=12)
    names = st.sampled_from(["observation", "prompt", "action", "mode", "seed", "task_family", "images", "state"])
    body = st.dictionaries(names | st.text(max_size=8), value, max_size=5)
    message = st.builds(lambda kind, msg_id, b, version: Message(kind, msg_id, b, version),
                        st.sampled_from(kinds) | st.text(max_size=40), st.integers(-(1 << 70), 1 << 70), body,
                        st.just(protocol.PROTOCOL_VERSION) | st.integers(-3, 3))
    return message.map(_encode_loosely)


def _encode_loosely(msg: Message) -> list[bytes]:
    try:
        return [bytes(f) for f in protocol.encode(msg)]
    except (TypeError, ValueError):  # e.g. an integer JSON cannot carry: send the header as text anyway
        return [repr(msg.__dict__).encode()]


HYPOTHESIS_MAX = 5000

# -- sending ------------------------------------------------------------------------------------
def _fuzz(server: _Server, kinds: tuple[str, ...], messages: int, seed: int, probe_every: int) -> dict:
    rng = np.random.default_rng(seed)
    context = zmq.Context()
    stats = {"sent": 0, "replies": 0, "probes": 0, "probes_unanswered": 0, "deaths": 0, "by_hypothesis": 0,
             "oversized": 0}
    sock = _fuzz_socket(context, server.address)

    def send(frames: list[bytes]) -> None:
        nonlocal sock
        try:
            sock.send_multipart(frames, copy=True)
        except zmq.Again:  # the server is busy (its queue is full): its replies are drained below
            pass
        stats["sent"] += 1
        if stats["sent"] % 100 == 0:
            stats["replies"] += _drain(sock)
        if stats["sent"] % probe_every == 0 and _probe_and_revive(context, server, stats):
            sock.close(linger=0)
            sock = _fuzz_socket(context, server.address)

    # hypothesis draws a structured message in ~25 ms, a raw one costs ~0.1 ms: a tenth of the messages,
    # at most HYPOTHESIS_MAX, come from hypothesis, so a million messages take minutes, not hours
    hypothesis_n = min(messages // 10, HYPOTHESIS_MAX)
    if hypothesis_n:
        from hypothesis import HealthCheck, Phase, given, settings

        @settings(max_examples=hypothesis_n, database=None, deadline=None, derandomize=True, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(_hypothesis_messages(kinds))
        def send_drawn(frames: list[bytes]) -> None:
            send(frames)
            stats["by_hypothesis"] += 1

        send_drawn()
    big = max(1, (messages - hypothesis_n) // BIG_EVERY)
    for i in tqdm(range(messages - stats["sent"]), desc=f"fuzzing {server.address}", unit="msg", mininterval=1.0):
        if i % max(1, (messages - hypothesis_n) // big) == 0 and stats["oversized"] < big:
            send([b'{"v":1,"kind":"ping","id":9,"body":{},"arrays":[{"dtype":"|u1","shape":[67108865]}]}',
                  bytes(67_108_865)])  # one byte over the 64 MiB request limit
            stats["oversized"] += 1
        else:
            send(_raw_message(rng, i, kinds))
    stats["replies"] += _drain(sock, wait_s=1.0)
    _probe_and_revive(context, server, stats)
    sock.close(linger=0)
    context.term()
    return stats


def _probe_and_revive(context: zmq.Context, server: _Server, stats: dict) -> bool:
    """One well-formed ping from a separate client, counted in `stats`; a dead server is counted and
    restarted. Returns True when it was restarted (its address may have changed)."""
    if not _probe(context, server.address):
        stats["probes_unanswered"] += 1
    stats["probes"] += 1
    if server.alive():
        return False
    stats["deaths"] += 1
    server.start()
    return True


def _fuzz_socket(context: zmq.Context, address: str) -> zmq.Socket:
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 2000)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.connect(address)
    return sock


def _drain(sock: zmq.Socket, wait_s: float = 0.0) -> int:
    n, end = 0, time.monotonic() + wait_s
    while True:
        try:
            sock.recv_multipart(flags=zmq.NOBLOCK)
            n += 1
        except zmq.Again:
            if time.monotonic() >= end:
                return n
            time.sleep(0.01)


def _probe(context: zmq.Context, address: str, timeout_s: float = 10.0) -> bool:
    """A well-formed ping from a fresh client gets its pong."""
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
    sock.connect(address)
    try:
        protocol.send(sock, protocol.encode(Message("ping", 424242, {})))
        reply = protocol.decode(sock.recv_multipart())
        return reply.kind == "pong" and reply.id == 424242
    except (zmq.Again, protocol.ProtocolError):
        return False
    finally:
        sock.close(linger=0)


def _well_formed_requests(address: str, name: str) -> bool:
    """Every kind of well-formed request this server serves is answered, through the real clients."""
    if name == "vla_server":
        from policy_client.zmq_client import ZmqPolicyClient

        client = ZmqPolicyClient(address, timeout_s=10.0)
        try:
            reply = client.infer({"images": {}, "state": np.zeros(6, np.float32), "timestamp": 0.0}, {"subtask": "s"})
            client.reset(0)
            return reply["actions"].shape == (10, 6) and client.ping() > 0
        finally:
            client.close()
    from coaching.robot_bridge import BridgeRobot

    robot = BridgeRobot(address, timeout_s=30.0)
    try:
        obs = robot.reset("sort_blocks", 0)
        robot.act(np.array([0.3, 0.1, 0.15, 0.0, 0.0, 1.0]), "ee")
        robot.hold()
        return robot.observe().images["base"].shape == obs.images["base"].shape
    finally:
        robot.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    print(json.dumps(run(**vars(parser.parse_args()))))


if __name__ == "__main__":
    main()
