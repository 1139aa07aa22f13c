"""Benchmark: round trip of one VLA request on loopback, ZMQ against openpi's websocket wire.

Payload: two 224x224x3 uint8 images, a 14-d state and a prompt, answered by a 50 x 14 float32
chunk. Each server runs in its own process (as a VLA would), so client and server do not share
an interpreter lock; the websocket server is asyncio-based and the client synchronous, as in
openpi's `WebsocketPolicyServer` and `WebsocketClientPolicy`. The floor is copying the payload
twice in memory. A second run puts four
client processes on the ZMQ server at once and counts lost requests.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from typing import Any

import numpy as np
from tqdm import tqdm

ECHO = "policy_client.echo_policy:from_options"
PROMPT = {"task": "bus the table", "subtask": "pick up the blue cup and put it in the bussing tub",
          "control_mode": "ee"}


def payload(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"images": {"base": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
                       "wrist": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)},
            "state": rng.normal(size=14).astype(np.float32), "timestamp": 0.0}


def _stats(samples_ms: list[float]) -> dict[str, float]:
    return {"median_ms": round(float(np.median(samples_ms)), 3), "p99_ms": round(float(np.percentile(samples_ms, 99)), 3)}


def _time_calls(call, n: int, warmup: int = 50, desc: str = "") -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in tqdm(range(n), desc=desc, unit="req", leave=False):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def _copy_floor_ms(obs: dict[str, Any], n: int = 500) -> float:
    arrays = [*obs["images"].values(), obs["state"]]
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        for a in arrays:
            a.copy().copy()
        samples.append((time.perf_counter() - start) * 1e3)
    return round(float(np.median(samples)), 3)


class _OpenPIEcho:
    """openpi-style policy for the websocket server: the same 50 x 14 chunk as the ZMQ echo."""

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        row = np.resize(np.asarray(obs["observation/state"], np.float32), 14)
        return {"actions": row[None, :] + np.arange(50, dtype=np.float32)[:, None]}


def _serve_openpi(port_out: "mp.Queue") -> None:
    from policy_client.openpi_server import OpenPIFormatServer

    server = OpenPIFormatServer(_OpenPIEcho())
    port_out.put(server.address)
    server.serve_forever()


def _concurrent_client(address: str, n: int, seed: int, out: "mp.Queue") -> None:
    from policy_client.errors import PolicyError
    from policy_client.zmq_client import ZmqPolicyClient

    client = ZmqPolicyClient(address, timeout_s=2.0)
    obs, samples, lost = payload(seed), [], 0
    for _ in range(20):
        client.infer(obs, PROMPT)
    for i in range(n):
        obs["state"][0] = i
        start = time.perf_counter()
        try:
            reply = client.infer(obs, PROMPT)
            if reply["actions"][0, 0] != i:
                lost += 1  # someone else's reply would be as bad as none
        except PolicyError:
            lost += 1
            continue
        samples.append((time.perf_counter() - start) * 1e3)
        time.sleep(0.002)  # a client asks at a control rate, not in a tight loop
    client.close()
    out.put((samples, lost))


def run(n: int = 1000, concurrent_clients: int = 4, concurrent_n: int = 500) -> dict[str, Any]:
    from policy_client import protocol
    from policy_client.local_server import LocalPolicyServer
    from policy_client.openpi_client import OpenPIPolicyClient
    from policy_client.protocol import Message
    from policy_client.zmq_client import ZmqPolicyClient

    obs = payload()
    frames = protocol.encode(Message("infer", 1, {"observation": obs, "prompt": PROMPT}))
    result: dict[str, Any] = {"payload_bytes": sum(memoryview(f).nbytes for f in frames),
                              "copy_floor_ms": _copy_floor_ms(obs)}
    ctx = mp.get_context("spawn")

    with LocalPolicyServer(ECHO, {"chunk_length": 50, "action_dim": 14}) as server:
        client = ZmqPolicyClient(server.address)
        result["zmq"] = _stats(_time_calls(lambda: client.infer(obs, PROMPT), n, desc="zmq"))
        client.close()

        out = ctx.Queue()
        procs = [ctx.Process(target=_concurrent_client, args=(server.address, concurrent_n, k, out))
                 for k in range(concurrent_clients)]
        for p in procs:
            p.start()
        results = [out.get(timeout=300) for _ in procs]
        for p in procs:
            p.join()
        samples = [s for r, _ in results for s in r]
        result["concurrent"] = {"clients": concurrent_clients, "requests": concurrent_clients * concurrent_n,
                                "lost": sum(lost for _, lost in results),
                                "p99_ms": _stats(samples)["p99_ms"], "median_ms": _stats(samples)["median_ms"]}

    port_out = ctx.Queue()
    ws_server = ctx.Process(target=_serve_openpi, args=(port_out,), daemon=True)
    ws_server.start()
    try:
        ws = OpenPIPolicyClient(port_out.get(timeout=60), layout="libero")
        result["websocket"] = _stats(_time_calls(lambda: ws.infer(obs, PROMPT), n, desc="websocket"))
        ws.close()
    finally:
        ws_server.terminate()
        ws_server.join()
    result["zmq_over_websocket_median"] = round(result["zmq"]["median_ms"] / result["websocket"]["median_ms"], 3)
    return result


def main() -> None:
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
