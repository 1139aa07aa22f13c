"""openpi layouts built from a robot's description, instead of one robot's fixed state order.

`fit_layout(name, state_names, cameras, options)` fills the LIBERO, DROID or ALOHA request keys from
the robot's own state names and cameras, found by role:

| role | state names it takes (in the robot's order) |
|---|---|
| end-effector position | `ee_x`, `ee_y`, `ee_z` (also `eef_` / `tcp_`) |
| end-effector rotation | `ee_roll`, `ee_pitch`, `ee_yaw`, `ee_rx`, `ee_ry`, `ee_rz` (same prefixes) |
| gripper | names holding `grip` |
| joints | other names starting `j<digit>`, `left_` or `right_`, or holding `joint` |
| arm (ALOHA) | the `left_` / `right_` prefix of joints and gripper |

A wrist camera is one whose name holds `wrist`; the third-person camera is the first other one.
Every choice can be given instead, in the address (`openpi://gpu:8000?layout=droid&joint_position=
a,b,c`) or a small JSON file (`?layout_file=my_robot.json`, the same short keys): a state key by its
last path part (`state`, `joint_position`, `gripper_position`) takes a comma list of state names, a
camera key (`image`, `wrist_image`, `exterior_image_1_left`, `wrist_image_left`, `cam_high`,
`cam_low`, `cam_left_wrist`, `cam_right_wrist`) a camera name, and `actions` is `auto`, `robot` or
`layout` (openpi_actions.py). Anything the robot cannot fill is refused in one sentence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from policy_client.openpi_layout import OpenPILayout, get_layout

ACTION_CHOICES = ("auto", "robot", "layout")
_EE = r"^(ee|eef|tcp)_"
_ROLES = {  # tried in this order: the first that matches takes the name
    "ee_position": re.compile(_EE + r"(x|y|z)$"),
    "ee_rotation": re.compile(_EE + r"(roll|pitch|yaw|rx|ry|rz)$"),
    "gripper": re.compile(r"grip"),
    "joint": re.compile(r"^(left_|right_)|^j\d|joint"),
}


class LayoutDoesNotFit(ValueError):
    """The robot cannot fill this openpi layout as asked; the message is one sentence saying what to give."""


def short_key(path: tuple[str, ...]) -> str:
    """The short name of a request key: its last path part without `observation/` (`joint_position`)."""
    return path[-1].removeprefix("observation/")


def state_by_role(state_names: Sequence[str]) -> dict[str, list[str]]:
    """The robot's state names grouped by role (see the module's table), each in the robot's order."""
    groups: dict[str, list[str]] = {role: [] for role in _ROLES}
    for name in state_names:
        lowered = name.lower()
        for role, pattern in _ROLES.items():
            if pattern.search(lowered):
                groups[role].append(name)
                break
    return groups


def read_options(query: Mapping[str, str]) -> dict[str, Any]:
    """The layout options of an address's query (without `layout`), merged over `layout_file`'s JSON.
    Comma lists become lists. LayoutDoesNotFit if the file cannot be read."""
    options: dict[str, Any] = {}
    if query.get("layout_file"):
        path = Path(query["layout_file"]).expanduser()
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise LayoutDoesNotFit(f"The openpi layout file {path} cannot be read as JSON ({e}).") from None
        if not isinstance(loaded, dict):
            raise LayoutDoesNotFit(f"The openpi layout file {path} must hold one JSON object of short keys.")
        options.update(loaded)
    for key, value in query.items():
        if key not in ("layout", "layout_file"):
            options[key] = value.split(",") if "," in value else value
    return options


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """LayoutDoesNotFit (one sentence) for an option this layout has no key for, or a bad `actions`."""
    layout = get_layout(name)
    known = {"layout", "actions", *_camera_paths(name), *(short_key(p) for p in layout.state)}
    for key in options:
        if key not in known:
            raise LayoutDoesNotFit(f"The openpi {name} layout has no key {key!r}; it takes {', '.join(sorted(known))}.")
    if options.get("actions", "auto") not in ACTION_CHOICES:
        raise LayoutDoesNotFit(f"actions={options['actions']!r} is not one of {', '.join(ACTION_CHOICES)}.")


def fit_layout(name: str, state_names: Sequence[str], cameras: Sequence[str],
               options: Mapping[str, Any] | None = None) -> OpenPILayout:
    """The `name` layout (libero | droid | aloha) filled from this robot's state names and cameras.

    Raises LayoutDoesNotFit with one sentence when a key cannot be filled: no camera of that kind, no
    state name of a role the layout needs (DROID's joints or gripper), or a given name the robot lacks.
    """
    options = dict(options or {})
    check_options(name, options)
    base = get_layout(name)
    groups = state_by_role(state_names)
    state: dict[tuple[str, ...], tuple[int, ...] | None] = {}
    for path in base.state:
        chosen = options.get(short_key(path))
        names = ([chosen] if isinstance(chosen, str) else list(chosen)) if chosen else _default_state(name, path, groups, state_names)
        missing = [n for n in names if n not in state_names]
        if missing:
            raise LayoutDoesNotFit(f"The robot has no state {', '.join(map(repr, missing))} for {short_key(path)!r}; "
                                   f"its state names are {', '.join(state_names)}.")
        state[path] = tuple(state_names.index(n) for n in names)
    images = {}
    for key, path in _camera_paths(name).items():
        camera = options.get(key) or _default_camera(name, key, cameras)
        if camera is None:
            continue  # an optional ALOHA camera this robot does not have
        if camera not in cameras:
            raise LayoutDoesNotFit(f"The robot has no camera {camera!r} for {key!r}; its cameras are {', '.join(cameras)}.")
        if camera in images:
            raise LayoutDoesNotFit(f"The camera {camera!r} is given for two keys of the {name} layout; give each key its own.")
        images[camera] = path
    return OpenPILayout(images=images, state=state, channels_first=base.channels_first, prompt_key=base.prompt_key)


# -- defaults by role -----------------------------------------------------------------------
def _default_state(name: str, path: tuple[str, ...], groups: dict[str, list[str]],
                   state_names: Sequence[str]) -> list[str]:
    if name == "libero":  # LIBERO's state: end-effector position, rotation, gripper
        pose = groups["ee_position"] + groups["ee_rotation"] + groups["gripper"]
        return pose if groups["ee_position"] else list(state_names)
    if name == "droid":
        role = "joint" if short_key(path) == "joint_position" else "gripper"
        if not groups[role]:
            raise LayoutDoesNotFit(f"The DROID layout needs the robot's {'joint positions' if role == 'joint' else 'gripper'} "
                                   f"for {short_key(path)!r}, and none of its state names ({', '.join(state_names)}) "
                                   f"reads as one: give {short_key(path)}=NAME,... in the address or layout file.")
        return groups[role]
    # ALOHA's state: each arm's joints then its gripper, left arm first
    arms = [[n for n in groups["joint"] + groups["gripper"] if n.lower().startswith(side)] for side in ("left_", "right_")]
    if arms[0] and arms[1]:
        return [n for arm in arms for n in sorted(arm, key=lambda n: ("grip" in n.lower(), state_names.index(n)))]
    one_arm = groups["joint"] + groups["gripper"]
    return one_arm if one_arm else list(state_names)


def _camera_paths(name: str) -> dict[str, tuple[str, ...]]:
    paths = {short_key(p): p for p in get_layout(name).images.values()}
    if name == "aloha":  # openpi's ALOHA examples also send these two when the robot has them
        paths.update({"cam_low": ("images", "cam_low"), "cam_right_wrist": ("images", "cam_right_wrist")})
    return paths


def _default_camera(name: str, key: str, cameras: Sequence[str]) -> str | None:
    wrists = [c for c in cameras if "wrist" in c.lower()]
    others = [c for c in cameras if c not in wrists]
    if key in ("image", "exterior_image_1_left", "cam_high"):
        high = [c for c in others if "low" not in c.lower()] or others  # ALOHA's low camera has a key of its own
        choice = high[0] if high else None
    elif key == "cam_low":
        return next((c for c in others if "low" in c.lower()), None)
    elif key == "cam_right_wrist":
        return next((c for c in wrists if "right" in c.lower()), None)
    else:  # the (left) wrist camera
        choice = next((c for c in wrists if "right" not in c.lower()), None)
    if choice is None:
        kind = "wrist" if "wrist" in key else "third-person (not named *wrist*)"
        raise LayoutDoesNotFit(f"The {name} layout needs a {kind} camera for {key!r} and the robot has "
                               f"{', '.join(cameras) or 'none'}: give {key}=CAMERA in the address or layout file.")
    return choice
