"""A server that follows openpi's websocket wire format, for testing and benchmarking the openpi backend.

It serves any openpi-style policy object (`infer(obs: dict) -> dict`, obs keyed as the openpi
examples key them) as openpi's `WebsocketPolicyServer` does: an asyncio websockets server without
compression; a msgpack metadata frame on connect; one msgpack frame per request and per reply,
with `server_timing` added; a text frame with the traceback, then a close, when the policy raises.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import traceback
from typing import Any

import websockets.asyncio.server
import websockets.exceptions

from policy_client import msgpack_numpy


class OpenPIFormatServer:
    """Binds at construction (port 0 = any free port); serve with `start()` (a thread) or `serve_forever()`."""

    def __init__(self, policy: Any, host: str = "127.0.0.1", port: int = 0, metadata: dict[str, Any] | None = None):
        self.policy = policy
        self.metadata = metadata or {}
        self._sock = socket.create_server((host, port))
        self.port: int = self._sock.getsockname()[1]
        self.address = f"{host}:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        asyncio.run(self._serve())

    def start(self) -> "OpenPIFormatServer":
        self._thread = threading.Thread(target=self.serve_forever, name="openpi-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=5)

    async def _serve(self) -> None:
        self._loop, self._stopped = asyncio.get_running_loop(), asyncio.Event()
        async with websockets.asyncio.server.serve(self._handle, sock=self._sock, compression=None, max_size=None):
            await self._stopped.wait()

    async def _handle(self, ws: websockets.asyncio.server.ServerConnection) -> None:
        await ws.send(msgpack_numpy.packb(self.metadata))
        while True:
            try:
                request = await ws.recv()
            except websockets.exceptions.ConnectionClosed:
                return
            try:
                start = time.perf_counter()
                reply = self.policy.infer(msgpack_numpy.unpackb(request))
                reply["server_timing"] = {"infer_ms": (time.perf_counter() - start) * 1e3}
                await ws.send(msgpack_numpy.packb(reply))
            except Exception:
                await ws.send(traceback.format_exc())
                await ws.close(code=1011, reason="Internal server error. Traceback included in previous frame.")
                return
