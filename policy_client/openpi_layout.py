"""Where a coachlab observation and prompt go in an openpi request, both ways.

An openpi request is one flat dict keyed like the served model's training data (LIBERO:
`observation/image`, `observation/wrist_image`, `observation/state`, `prompt`). `OpenPILayout` says
which key holds each coachlab camera and which entries of the proprio vector; `to_openpi` builds a
request (the openpi client), `from_openpi` reads one back into `(observation, prompt)` (coachlab's
openpi-format server), refusing in one sentence a request the layout cannot read.

Beside the layout's keys a coachlab server reads a few optional keys of its own (`COACHLAB_KEYS`):
the task, the control mode, the episode and segment bookkeeping, and for the sim the privileged
`env_state`. coachlab's client sends them only to a server whose metadata says it is coachlab's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The optional keys a coachlab openpi-format server reads beside the layout's (docs/protocol.md).
COACHLAB_KEYS = ("task", "control_mode", "episode", "segment", "timestamp", "env_state")


class OpenPIRequestError(ValueError):
    """An openpi request this layout cannot read; the message is one sentence saying what to send."""


@dataclass(frozen=True)
class OpenPILayout:
    """Where each piece of a coachlab observation goes in an openpi request.

    `images` maps a coachlab camera to a key path (a tuple for nested dicts); `state` maps key
    paths to the indices of the proprio vector they hold (None = all of it), in request order.
    `openpi_robot_layout.fit_layout` builds one from a robot's state names; `LAYOUTS` are the
    defaults for a client that was told no robot (the order of coachlab's sim arm).
    """

    images: dict[str, tuple[str, ...]]
    state: dict[tuple[str, ...], tuple[int, ...] | None]
    channels_first: bool = False
    prompt_key: str = "prompt"
    extra: dict[str, Any] = field(default_factory=dict)
    ignored: tuple[tuple[str, ...], ...] = ()  # keys a server accepts and does not pass on (ALOHA's other cameras)


LAYOUTS: dict[str, OpenPILayout] = {
    # examples/libero/main.py: a third-person and a wrist image, one state vector
    "libero": OpenPILayout(images={"base": ("observation/image",), "wrist": ("observation/wrist_image",)},
                           state={("observation/state",): None}),
    # examples/droid/main.py: joints and gripper are separate keys
    "droid": OpenPILayout(images={"base": ("observation/exterior_image_1_left",), "wrist": ("observation/wrist_image_left",)},
                          state={("observation/joint_position",): (0, 1, 2, 3, 4), ("observation/gripper_position",): (5,)}),
    # examples/aloha_real/env.py: nested `images` in CHW order and a `state` vector
    "aloha": OpenPILayout(images={"base": ("images", "cam_high"), "wrist": ("images", "cam_left_wrist")},
                          state={("state",): None}, channels_first=True,
                          ignored=(("images", "cam_low"), ("images", "cam_right_wrist"))),
}


def get_layout(name: str) -> OpenPILayout:
    """The named layout; ValueError in one sentence for a name that is not one."""
    if name not in LAYOUTS:
        raise ValueError(f"Unknown openpi layout {name!r}; choose one of {', '.join(LAYOUTS)}.")
    return LAYOUTS[name]


def to_openpi(layout: OpenPILayout, observation: dict[str, Any], prompt: dict[str, Any],
              coachlab_keys: bool = False, env_state: bool = False) -> dict[str, Any]:
    """An openpi request: images (HxWx3 uint8, CHW for channels-first layouts) and state entries
    (float32 vectors) under the layout's keys, the subtask (else the task) under `prompt`. With `coachlab_keys`
    it adds the task, control mode, episode and segment; with `env_state` also the sim's `env_state`.
    ValueError if the robot lacks a camera the layout wants."""
    out: dict[str, Any] = {}
    for camera, path in layout.images.items():
        image = observation["images"].get(camera)
        if image is None:
            raise ValueError(f"The openpi layout wants camera {camera!r}; the robot has {', '.join(observation['images'])}.")
        _put(out, path, np.ascontiguousarray(image.transpose(2, 0, 1)) if layout.channels_first else image)
    state = np.asarray(observation["state"], dtype=np.float32)
    for path, indices in layout.state.items():
        _put(out, path, state if indices is None else state[list(indices)])
    out[layout.prompt_key] = str(prompt.get("subtask") or prompt.get("task") or "")
    out.update(layout.extra)
    if coachlab_keys:
        out.update({k: prompt[k] for k in ("task", "control_mode", "episode", "segment") if prompt.get(k) is not None})
        out["timestamp"] = float(observation.get("timestamp") or 0.0)
    if env_state and observation.get("env_state") is not None:
        out["env_state"] = observation["env_state"]
    return out


def from_openpi(layout: OpenPILayout, name: str, request: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read an openpi request back into coachlab's `(observation, prompt)`.

    Cameras come back HxWx3 uint8, the state as one float32 vector (the layout's state keys in order),
    `prompt` becomes the subtask (and the task, unless `task` is sent). Raises OpenPIRequestError
    (one sentence, naming `name`) for a request that is not a dict, lacks a key the layout needs,
    has a key neither the layout nor coachlab knows, or holds an image or state of the wrong kind.
    """
    if not isinstance(request, dict):
        raise OpenPIRequestError(f"An openpi request must be a map of keys to values, not {type(request).__name__}.")
    _refuse_unknown_keys(layout, name, request)
    images = {camera: _image(layout, name, _get(layout, request, path, name), path) for camera, path in layout.images.items()}
    parts = [_vector(_get(layout, request, path, name), path, name) for path in layout.state]
    text = request.get(layout.prompt_key)
    if not isinstance(text, str) or not text.strip():
        raise OpenPIRequestError(f"The request has no {layout.prompt_key!r} text; send the subtask under {layout.prompt_key!r}.")
    observation: dict[str, Any] = {"images": images, "state": np.concatenate(parts) if parts else np.zeros(0, np.float32),
                                   "timestamp": float(request.get("timestamp") or 0.0)}
    if request.get("env_state") is not None:
        observation["env_state"] = request["env_state"]
    prompt = {"task": str(request.get("task") or text), "subtask": text,
              "control_mode": str(request.get("control_mode") or "ee")}
    prompt.update({k: request[k] for k in ("episode", "segment") if request.get(k) is not None})
    return observation, prompt


def layout_keys(layout: OpenPILayout) -> list[str]:
    """The keys a request in this layout must carry, nested ones as `outer/inner` paths."""
    return [".".join(p) for p in [*layout.images.values(), *layout.state]] + [layout.prompt_key]


# -- internals ------------------------------------------------------------------------------
def _refuse_unknown_keys(layout: OpenPILayout, name: str, request: dict[str, Any]) -> None:
    """Unknown keys are refused, not ignored: a request in another layout (DROID's keys sent to a LIBERO
    server) would otherwise fail later as a missing key, hiding which layout the client speaks."""
    paths = [*layout.images.values(), *layout.state, (layout.prompt_key,), *((k,) for k in layout.extra), *layout.ignored]
    nested: dict[str, set[str]] = {}
    for path in paths:
        if len(path) > 1:
            nested.setdefault(path[0], set()).add(path[1])
    known = {path[0] for path in paths} | set(COACHLAB_KEYS)
    for key, value in request.items():
        if key not in known:
            raise OpenPIRequestError(f"The request has the key {key!r}, which the {name} layout does not use; "
                                     f"send {', '.join(layout_keys(layout))} (or serve with the layout your client speaks).")
        if key in nested and isinstance(value, dict):
            for inner in value:
                if inner not in nested[key]:
                    raise OpenPIRequestError(f"The request has the key '{key}.{inner}', which the {name} layout does "
                                             f"not use; send {', '.join(layout_keys(layout))}.")


def _get(layout: OpenPILayout, request: dict[str, Any], path: tuple[str, ...], name: str) -> Any:
    value: Any = request
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise OpenPIRequestError(f"The request lacks {'.'.join(path)!r}, which the {name} layout needs; "
                                     f"send {', '.join(layout_keys(layout))}.")
        value = value[key]
    return value


def _image(layout: OpenPILayout, name: str, value: Any, path: tuple[str, ...]) -> np.ndarray:
    order = "3 x H x W" if layout.channels_first else "H x W x 3"
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 3 \
            or value.shape[0 if layout.channels_first else 2] != 3:
        got = f"a {value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
        raise OpenPIRequestError(f"{'.'.join(path)!r} must be a {order} uint8 image in the {name} layout, not {got}.")
    return np.ascontiguousarray(value.transpose(1, 2, 0)) if layout.channels_first else value


def _vector(value: Any, path: tuple[str, ...], name: str) -> np.ndarray:
    array = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else None
    if array is None or array.ndim != 1 or array.dtype.kind not in "biuf":
        raise OpenPIRequestError(f"{'.'.join(path)!r} must be a 1-D numeric vector in the {name} layout.")
    return array.astype(np.float32)


def _put(out: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        out = out.setdefault(key, {})
    out[path[-1]] = value
