"""The openpi backend: the same `infer(observation, prompt)` against an openpi policy server.

openpi's wire: a websocket; on connect the server sends one msgpack metadata frame; each request
is one msgpack frame holding the observation under the keys the served model expects plus
`prompt`, each reply one msgpack frame with `actions` (and `server_timing`); a text frame means
the server failed (it says why) and the server closes the connection. A layout
(`openpi_layout.py`) maps coachlab's cameras and state onto the served model's keys; the subtask
is sent as `prompt`, since that is what the low-level policy executes. Like openpi's own client it
sends `Authorization: Api-Key KEY` when given a key, and takes `ws://` and `wss://` addresses.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from typing import Any

import numpy as np
import websockets.exceptions
import websockets.sync.client

from policy_client import msgpack_numpy
from policy_client.base_policy import BasePolicy
from policy_client.errors import PolicyServerError, PolicyTimeout, PolicyUnreachable, ProtocolMismatch
from policy_client.openpi_layout import LAYOUTS, OpenPILayout, get_layout, to_openpi

__all__ = ["LAYOUTS", "OpenPILayout", "OpenPIPolicyClient"]


class OpenPIPolicyClient(BasePolicy):
    """An openpi websocket policy server behind coachlab's policy interface."""

    def __init__(self, address: str, layout: str | OpenPILayout = "libero", timeout_s: float = 5.0,
                 handshake: bool = True, api_key: str | None = None):
        """`address` is host:port or a ws:// or wss:// URI (wss verifies the server's certificate against
        the system's CAs, or $SSL_CERT_FILE); `api_key` is sent as `Authorization: Api-Key KEY`.
        Connects at once unless `handshake` is False: PolicyUnreachable, ProtocolMismatch."""
        self.uri = address if address.startswith(("ws://", "wss://")) else f"ws://{address}"
        self.layout = get_layout(layout) if isinstance(layout, str) else layout
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self._ws: websockets.sync.client.ClientConnection | None = None
        self._open = ExitStack()  # websockets 17 wants connections entered as context managers
        self._lock = threading.Lock()
        self.server_hello: dict[str, Any] = {}
        self.last_round_trip_ms: float | None = None
        if handshake:
            with self._lock:
                self._connection()

    @property
    def metadata(self) -> dict[str, Any]:
        return self.server_hello

    def infer(self, observation: dict[str, Any], prompt: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        request = self.to_openpi(observation, prompt)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            ws = self._connection()
            start = time.perf_counter()
            try:
                ws.send(msgpack_numpy.packb(request))
                reply = ws.recv(timeout=timeout)
            except TimeoutError:
                self._drop()  # the late reply would otherwise answer the next request
                raise PolicyTimeout(f"The openpi server at {self.uri} did not answer within {timeout:.1f} s; "
                                    "the robot holds. Check the server or raise the timeout.") from None
            except (websockets.exceptions.ConnectionClosed, OSError) as e:
                self._drop()
                raise PolicyUnreachable(f"The openpi server at {self.uri} closed the connection ({e}); "
                                        "it will be reconnected on the next request.") from None
            self.last_round_trip_ms = (time.perf_counter() - start) * 1e3
            if isinstance(reply, str):  # openpi's way of saying the policy raised; it closes the connection
                self._drop()
                last_line = (reply.strip().splitlines() or ["(no message)"])[-1]
                raise PolicyServerError(f"The openpi server at {self.uri} failed: {last_line}")
        try:
            body = msgpack_numpy.unpackb(reply)
        except Exception as e:  # anything undecodable means the peer is not an openpi server
            raise ProtocolMismatch(f"The reply from {self.uri} is not openpi msgpack: {e}") from None
        if not isinstance(body, dict) or "actions" not in body:
            raise ProtocolMismatch(f"The openpi server at {self.uri} replied without 'actions'.")
        actions = np.asarray(body.pop("actions"), dtype=np.float32)
        timing = body.pop("server_timing", {})
        return {"actions": actions, "info": body, "server_timing": timing}

    def reset(self, seed: int | None = None) -> None:
        """openpi servers keep no episode state over the wire; nothing to send."""

    def close(self) -> None:
        with self._lock:
            self._drop()

    def to_openpi(self, observation: dict[str, Any], prompt: dict[str, Any]) -> dict[str, Any]:
        """Map a coachlab observation and prompt onto this layout's openpi keys. A coachlab server (its
        metadata has a `coachlab` entry) also gets the task, control mode and episode bookkeeping, and
        the sim's `env_state` when its policy says it needs it; any other openpi server only the layout."""
        coachlab = isinstance(self.server_hello.get("coachlab"), dict)
        return to_openpi(self.layout, observation, prompt, coachlab_keys=coachlab,
                         env_state=coachlab and bool(self.server_hello.get("needs_env_state")))

    # -- connection -------------------------------------------------------------------------
    def _connection(self) -> websockets.sync.client.ClientConnection:
        if self._ws is None:
            try:
                ws = self._open.enter_context(websockets.sync.client.connect(
                    self.uri, compression=None, max_size=None, open_timeout=self.timeout_s,
                    additional_headers=self._headers))
                first = ws.recv(timeout=self.timeout_s)
            except websockets.exceptions.InvalidStatus as e:
                self._open.close()
                status = e.response.status_code
                hint = ("pass its API key ($COACHLAB_VLA_API_KEY)" if status in (401, 403)
                        else "check the address's host, port and path")
                raise PolicyUnreachable(f"The openpi server at {self.uri} refused the connection with HTTP {status}; "
                                        f"{hint}.") from None
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as e:
                self._open.close()
                raise PolicyUnreachable(f"No openpi policy server answers at {self.uri} ({e}); start it or "
                                        "pass the right --vla openpi://host:port address.") from None
            try:
                meta = msgpack_numpy.unpackb(first) if isinstance(first, bytes) else None
            except Exception:
                meta = None
            if not isinstance(meta, dict):
                self._open.close()
                raise ProtocolMismatch(f"The server at {self.uri} sent no openpi metadata frame on connect.")
            self._ws, self.server_hello = ws, meta
        return self._ws

    def _drop(self) -> None:
        self._open.close()
        self._ws = None
