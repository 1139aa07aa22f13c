"""The openpi backend: the same `infer(observation, prompt)` against an openpi policy server.

openpi's wire: a websocket; on connect the server sends one msgpack metadata frame; each request
is one msgpack frame holding the observation under the keys the served model expects plus
`prompt`, each reply one msgpack frame with `actions` (and `server_timing`); a text frame means
the server failed (it carries the traceback) and the server closes the connection.
`OpenPILayout` maps coachlab's cameras and state onto the keys of openpi's LIBERO, DROID and
ALOHA examples; the subtask is sent as `prompt`, since that is what the low-level policy executes.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets.exceptions
import websockets.sync.client

from policy_client import msgpack_numpy
from policy_client.base_policy import BasePolicy
from policy_client.errors import PolicyServerError, PolicyTimeout, PolicyUnreachable, ProtocolMismatch


@dataclass(frozen=True)
class OpenPILayout:
    """Where each piece of a coachlab observation goes in an openpi request.

    `images` maps a coachlab camera to a key path (a tuple for nested dicts); `state` maps key
    paths to slices of the proprio vector (None = all of it).
    """

    images: dict[str, tuple[str, ...]]
    state: dict[tuple[str, ...], tuple[int, int] | None]
    channels_first: bool = False
    prompt_key: str = "prompt"
    extra: dict[str, Any] = field(default_factory=dict)


LAYOUTS: dict[str, OpenPILayout] = {
    # examples/libero/main.py: a third-person and a wrist image, one state vector
    "libero": OpenPILayout(images={"base": ("observation/image",), "wrist": ("observation/wrist_image",)},
                           state={("observation/state",): None}),
    # examples/droid/main.py: joints and gripper are separate keys
    "droid": OpenPILayout(images={"base": ("observation/exterior_image_1_left",), "wrist": ("observation/wrist_image_left",)},
                          state={("observation/joint_position",): (0, 5), ("observation/gripper_position",): (5, 6)}),
    # examples/aloha_real/env.py: nested `images` in CHW order and a `state` vector
    "aloha": OpenPILayout(images={"base": ("images", "cam_high"), "wrist": ("images", "cam_left_wrist")},
                          state={("state",): None}, channels_first=True),
}


class OpenPIPolicyClient(BasePolicy):
    """An openpi websocket policy server behind coachlab's policy interface."""

    def __init__(self, address: str, layout: str | OpenPILayout = "libero", timeout_s: float = 5.0,
                 handshake: bool = True):
        self.uri = address if address.startswith("ws") else f"ws://{address}"
        if isinstance(layout, str) and layout not in LAYOUTS:
            raise ValueError(f"Unknown openpi layout {layout!r}; choose one of {', '.join(LAYOUTS)}.")
        self.layout = LAYOUTS[layout] if isinstance(layout, str) else layout
        self.timeout_s = timeout_s
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
        """Map a coachlab observation and prompt onto this layout's openpi keys."""
        out: dict[str, Any] = {}
        for camera, path in self.layout.images.items():
            image = observation["images"].get(camera)
            if image is None:
                raise ValueError(f"The openpi layout wants camera {camera!r}; the robot has {', '.join(observation['images'])}.")
            _put(out, path, np.ascontiguousarray(image.transpose(2, 0, 1)) if self.layout.channels_first else image)
        state = np.asarray(observation["state"], dtype=np.float32)
        for path, span in self.layout.state.items():
            _put(out, path, state if span is None else state[span[0]:span[1]])
        out[self.layout.prompt_key] = str(prompt.get("subtask") or prompt.get("task") or "")
        out.update(self.layout.extra)
        return out

    # -- connection -------------------------------------------------------------------------
    def _connection(self) -> websockets.sync.client.ClientConnection:
        if self._ws is None:
            try:
                ws = self._open.enter_context(websockets.sync.client.connect(
                    self.uri, compression=None, max_size=None, open_timeout=self.timeout_s))
                first = ws.recv(timeout=self.timeout_s)
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


def _put(out: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        out = out.setdefault(key, {})
    out[path[-1]] = value
