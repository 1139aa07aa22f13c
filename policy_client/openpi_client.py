"""The openpi backend: the same `infer(observation, prompt)` against an openpi policy server.

openpi's wire: a websocket; on connect the server sends one msgpack metadata frame; each request
is one msgpack frame holding the observation under the keys the served model expects plus
`prompt`, each reply one msgpack frame with `actions` (and `server_timing`); a text frame means
the server failed (it says why) and the server closes the connection. A layout
(`openpi_layout.py`) maps coachlab's cameras and state onto the served model's keys; the subtask
is sent as `prompt`, since that is what the low-level policy executes. Once told the robot
(`fit_robot`, called by `coaching.vla.fit_vla` when an episode starts) the layout is filled from the
robot's state names and cameras (`openpi_robot_layout.py`) and a chunk in the layout's action
convention is made into the robot's actions or refused (`openpi_actions.py`). Like openpi's own
client it sends `Authorization: Api-Key KEY` when given a key, and takes `ws://` and `wss://`.
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
from policy_client.openpi_actions import reads_as_layout, to_robot
from policy_client.openpi_layout import LAYOUTS, OpenPILayout, get_layout, to_openpi
from policy_client.openpi_robot_layout import check_options, fit_layout

__all__ = ["LAYOUTS", "OpenPILayout", "OpenPIPolicyClient"]


class OpenPIPolicyClient(BasePolicy):
    """An openpi websocket policy server behind coachlab's policy interface."""

    def __init__(self, address: str, layout: str | OpenPILayout | None = None, timeout_s: float = 5.0,
                 handshake: bool = True, api_key: str | None = None, options: dict[str, Any] | None = None):
        """`address` is host:port or a ws:// or wss:// URI (wss verifies the server's certificate against
        the system's CAs, or $SSL_CERT_FILE); `api_key` is sent as `Authorization: Api-Key KEY`;
        `layout` None means the layout a coachlab server names in its metadata, else libero;
        `options` are the layout's choices (openpi_robot_layout: state names and cameras per key,
        `actions`), applied by `fit_robot`. ValueError (one sentence) for an unknown layout or option;
        connects at once unless `handshake` is False: PolicyUnreachable, ProtocolMismatch."""
        self.uri = address if address.startswith(("ws://", "wss://")) else f"ws://{address}"
        self._layout_given = layout is not None
        layout = "libero" if layout is None else layout
        self.layout_name = layout if isinstance(layout, str) else None
        self.layout = get_layout(layout) if isinstance(layout, str) else layout
        self.options = dict(options or {})
        if self.layout_name is not None and self._layout_given:  # else once the server has said its layout
            check_options(self.layout_name, self.options)
        self._robot: tuple[list[str], dict[str, tuple[str, ...]], list[str]] | None = None
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self._ws: websockets.sync.client.ClientConnection | None = None
        self._open = ExitStack()  # websockets 17 wants connections entered as context managers
        self._lock = threading.Lock()
        self.server_hello: dict[str, Any] = {}
        self.last_round_trip_ms: float | None = None
        if handshake:
            self.connect()

    def connect(self) -> None:
        """Connect and read the metadata frame now (else on the first request): PolicyUnreachable, ProtocolMismatch."""
        with self._lock:
            self._connection()

    @property
    def metadata(self) -> dict[str, Any]:
        return self.server_hello

    def fit_robot(self, state_names: list[str], action_names: dict[str, tuple[str, ...]], cameras: list[str]) -> None:
        """Build the layout from this robot's state names and cameras (and the address's options), and
        from now on make the layout's actions into this robot's (openpi_actions). LayoutDoesNotFit (a
        ValueError, one sentence) when the robot cannot fill the layout."""
        if self.layout_name is None:
            return  # a hand-made OpenPILayout is used as given
        self.layout = fit_layout(self.layout_name, list(state_names), list(cameras), self.options)
        self._robot = (list(state_names), dict(action_names), list(cameras))

    def infer(self, observation: dict[str, Any], prompt: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            ws = self._connection()
            request = self.to_openpi(observation, prompt)  # after connecting: the keys depend on the server's metadata
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
        if self._robot is not None and actions.ndim == 2:
            state_names, action_names, _ = self._robot
            names = action_names.get(str(prompt.get("control_mode") or "ee"))
            if names and reads_as_layout(self.layout_name, actions.shape[1], names, self.options.get("actions", "auto")):
                actions = to_robot(self.layout_name, actions, observation["state"], state_names, names,
                                   str(prompt.get("control_mode") or "ee"))
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
            try:
                self._follow_served_layout(meta)
            except ValueError as e:
                self._open.close()
                raise ProtocolMismatch(str(e)) from None
            self._ws, self.server_hello = ws, meta
        return self._ws

    def _follow_served_layout(self, meta: dict[str, Any]) -> None:
        """A coachlab server names the layout it reads: take it when the address named none; refuse
        (ValueError, one sentence) an address that named another, which every request would fail on."""
        coachlab = meta.get("coachlab")
        served = coachlab.get("layout") if isinstance(coachlab, dict) else None
        if self.layout_name is None or served not in LAYOUTS or served == self.layout_name:
            if self.layout_name is not None and not self._layout_given:
                check_options(self.layout_name, self.options)
            return
        if self._layout_given:
            raise ValueError(f"The coachlab server at {self.uri} reads the {served} layout, not {self.layout_name}: "
                             f"give layout={served} in the address, or leave layout out.")
        check_options(served, self.options)
        self.layout_name, self.layout = served, get_layout(served)
        if self._robot is not None:
            state_names, _, cameras = self._robot
            self.layout = fit_layout(served, state_names, cameras, self.options)

    def _drop(self) -> None:
        self._open.close()
        self._ws = None
