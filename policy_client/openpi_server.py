"""A server that follows openpi's websocket wire format, for testing and benchmarking the openpi backend.

It serves any openpi-style policy object (`infer(obs: dict) -> dict`, obs keyed as the openpi
examples key them) exactly as openpi's `WebsocketPolicyServer` does on the wire: a msgpack
metadata frame on connect, one msgpack frame per request and reply with `server_timing` added,
and a text frame followed by a close when the policy raises.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

import websockets.exceptions
import websockets.sync.server

from policy_client import msgpack_numpy


class OpenPIFormatServer:
    def __init__(self, policy: Any, host: str = "127.0.0.1", port: int = 0, metadata: dict[str, Any] | None = None):
        self.policy = policy
        self.metadata = metadata or {}
        self._server = websockets.sync.server.serve(self._handle, host, port, compression=None, max_size=None)
        self.port: int = self._server.socket.getsockname()[1]
        self.address = f"{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> "OpenPIFormatServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="openpi-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _handle(self, ws: websockets.sync.server.ServerConnection) -> None:
        ws.send(msgpack_numpy.packb(self.metadata))
        while True:
            try:
                request = ws.recv()
            except websockets.exceptions.ConnectionClosed:
                return
            try:
                start = time.perf_counter()
                reply = self.policy.infer(msgpack_numpy.unpackb(request))
                reply["server_timing"] = {"infer_ms": (time.perf_counter() - start) * 1e3}
                ws.send(msgpack_numpy.packb(reply))
            except Exception:
                ws.send(traceback.format_exc())
                ws.close(code=1011, reason="Internal server error. Traceback included in previous frame.")
                return
