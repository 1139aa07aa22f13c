"""A server on openpi's websocket wire: what openpi's `WebsocketClientPolicy` connects to.

It serves any openpi-style policy object (`infer(obs: dict) -> dict`; a coachlab policy goes through
`openpi_adapter.OpenPIPolicyAdapter`) as openpi's `WebsocketPolicyServer` does: an asyncio
`websockets` server without compression or size limit; `GET /healthz` answers 200 `OK`; on connect
one msgpack frame with the metadata; then per request one msgpack frame in, one out, with
`server_timing` (`infer_ms`, and `prev_total_ms` from the second request on) added to the reply.
When a request cannot be served it sends one text frame (a sentence saying why) and closes the
connection with code 1011, as openpi does; the server itself keeps serving other connections.

Beyond openpi: an optional API key (`Authorization: Api-Key KEY`, the header openpi's client sends)
without which the handshake is refused with 401, required when listening beyond loopback; and an
optional TLS context, so clients reach it as `wss://`.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import logging
import socket
import ssl
import threading
import time
from typing import Any

import websockets.asyncio.server
import websockets.exceptions
import websockets.frames

from policy_client import msgpack_numpy
from policy_client.connect import API_KEY_ENV
from policy_client.curve import InsecureBind, is_loopback
from policy_client.openpi_layout import OpenPIRequestError
from policy_client.server import AddressInUse

log = logging.getLogger(__name__)

CLOSE_REASON = "Internal server error. Traceback included in previous frame."  # openpi's words, kept for its clients


def check_bind(host: str, port: int, api_key: str | None) -> None:
    """InsecureBind (one sentence) when the server would listen beyond loopback without an API key."""
    if not api_key and not is_loopback(f"tcp://{host}:{port}"):
        raise InsecureBind(f"Refusing to serve the VLA server on {host}:{port} without an API key: anyone who "
                           f"reaches that port could use it. Pass --api-key KEY (or ${API_KEY_ENV}) and give "
                           "clients the same key, or bind 127.0.0.1.")


class OpenPIFormatServer:
    """Binds at construction (port 0 = any free port); serve with `start()` (a thread), `serve_forever()`
    or `serve_until_interrupted()`. `served` and `errors` count requests answered and refused.

    Raises InsecureBind (one sentence) for an address beyond loopback without `api_key`, AddressInUse
    when the port cannot be bound.
    """

    def __init__(self, policy: Any, host: str = "127.0.0.1", port: int = 0, metadata: dict[str, Any] | None = None,
                 api_key: str | None = None, ssl_context: ssl.SSLContext | None = None):
        check_bind(host, port, api_key)
        self.policy = policy
        self.metadata = metadata if metadata is not None else dict(getattr(policy, "metadata", {}) or {})
        self.api_key = api_key or None
        self.ssl_context = ssl_context
        try:
            self._sock = socket.create_server((host, port))
        except OSError as e:
            raise AddressInUse(f"Cannot listen on {host}:{port} ({e.strerror}); choose another --port or stop "
                               "whatever holds it.") from None
        self.port: int = self._sock.getsockname()[1]
        self.address = f"{host}:{self.port}"
        self.uri = f"{'wss' if ssl_context else 'ws'}://{self.address}"
        self.served = 0
        self.errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def serve_forever(self) -> None:
        asyncio.run(self._serve())

    def serve_until_interrupted(self) -> None:
        """Serve in the foreground until Ctrl+C (the command-line server)."""
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass

    def start(self) -> "OpenPIFormatServer":
        """Serve on a background thread (tests, benchmarks)."""
        self._thread = threading.Thread(target=self.serve_forever, name="openpi-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (connected clients see the connection close); stopping twice is harmless."""
        if self._loop is not None and self._stopped is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopped.set)
            except RuntimeError:  # the loop has already finished: stopped before
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    async def _serve(self) -> None:
        self._loop, self._stopped = asyncio.get_running_loop(), asyncio.Event()
        async with websockets.asyncio.server.serve(self._handle, sock=self._sock, compression=None, max_size=None,
                                                   process_request=self._before_handshake, ssl=self.ssl_context):
            await self._stopped.wait()

    # -- one connection ---------------------------------------------------------------------
    def _before_handshake(self, connection: websockets.asyncio.server.ServerConnection,
                          request: websockets.asyncio.server.Request) -> websockets.asyncio.server.Response | None:
        """`/healthz` answers 200 without a key (load balancers probe it); a wrong or missing key is 401."""
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.api_key is not None:
            sent = request.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Api-Key {self.api_key}".encode()):
                return connection.respond(http.HTTPStatus.UNAUTHORIZED,
                                          "This VLA server needs the header 'Authorization: Api-Key KEY' with its key.\n")
        return None

    async def _handle(self, ws: websockets.asyncio.server.ServerConnection) -> None:
        await ws.send(msgpack_numpy.packb(self.metadata))
        prev_total_ms: float | None = None
        while True:
            try:
                frame = await ws.recv()
            except websockets.exceptions.ConnectionClosed:
                return
            start = time.monotonic()
            try:
                reply, infer_ms = self._answer(frame)
            except Exception as e:
                self.errors += 1
                await self._fail(ws, e)
                return
            reply["server_timing"] = {"infer_ms": infer_ms}
            if prev_total_ms is not None:  # openpi reports the previous total, which includes its send
                reply["server_timing"]["prev_total_ms"] = prev_total_ms
            try:
                await ws.send(msgpack_numpy.packb(reply))
            except websockets.exceptions.ConnectionClosed:
                return
            except Exception as e:  # the policy answered something msgpack cannot carry
                self.errors += 1
                await self._fail(ws, e)
                return
            self.served += 1
            prev_total_ms = (time.monotonic() - start) * 1e3

    def _answer(self, frame: str | bytes) -> tuple[dict[str, Any], float]:
        """The reply to one frame and the policy's time on it in ms; raises OpenPIRequestError for a frame that is not
        an openpi request, or whatever the policy raised."""
        if isinstance(frame, str):
            raise OpenPIRequestError("The request came as a text frame; send the observation as one binary "
                                     "msgpack frame, as openpi's client does.")
        try:
            obs = msgpack_numpy.unpackb(frame)
        except Exception as e:  # msgpack raises several types; any of them means not openpi's encoding
            raise OpenPIRequestError(f"The request is not msgpack in openpi's numpy encoding ({e}).") from None
        start = time.monotonic()
        reply = self.policy.infer(obs)
        if not isinstance(reply, dict):
            raise TypeError(f"The policy answered a {type(reply).__name__}, not a dict with 'actions'.")
        return dict(reply), (time.monotonic() - start) * 1e3

    async def _fail(self, ws: websockets.asyncio.server.ServerConnection, error: Exception) -> None:
        """One text frame saying why, then close with 1011, as openpi's server does (its clients raise
        the text). The traceback stays in this server's log, not on the wire."""
        if isinstance(error, OpenPIRequestError):
            text = str(error)
            log.info("refused a request: %s", text)
        else:
            text = f"The policy failed: {type(error).__name__}: {error}"
            log.error("request failed", exc_info=error)
        try:
            await ws.send(text)
            await ws.close(code=websockets.frames.CloseCode.INTERNAL_ERROR, reason=CLOSE_REASON)
        except websockets.exceptions.ConnectionClosed:
            pass
