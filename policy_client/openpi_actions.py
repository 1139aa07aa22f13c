"""An openpi model's actions made into the robot's, per layout, or refused in one sentence.

A model fine-tuned on this robot answers the robot's own actions (`actions=robot`: used as they are,
then checked by chunk_check). A base checkpoint answers its layout's actions (`actions=layout`):

| layout | a row of the chunk | made into |
|---|---|---|
| libero | 7: end-effector position delta (3) and rotation delta (3, axis-angle), each in -1..1, then gripper -1 open .. +1 closed | the robot's ee targets: position += delta x 0.05 m and rotation += delta x 0.5 rad (robosuite's OSC_POSE scaling; per axis, a small-angle reading of axis-angle), summed along the chunk from the current state; grip = (1 - g) / 2 |
| droid | 8: 7 joint velocities in -1..1, then gripper position 0 open .. 1 closed | joint targets: joints += velocity x 0.2 rad per step (DROID's joint_velocity_to_delta, scaled down so no joint exceeds 1), summed; grip = 1 if g <= 0.5 else 0 (DROID's examples binarise at 0.5) |
| aloha | 14: left arm 6 joints and gripper, right arm the same, absolute | used as they are, for a robot with 14 joint-mode actions |

`auto` (the default) reads a chunk as the layout's when its width is the layout's and not the
robot's, else as the robot's. The robot's action names say where each value goes: x/y/z, roll/pitch/
yaw, grip (any name holding `grip`), joints in order; the state names (openpi_robot_layout roles)
say where the sums start. A robot that lacks what a layout's actions need is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from policy_client.errors import PolicyServerError
from policy_client.openpi_robot_layout import state_by_role

WIDTH = {"libero": 7, "droid": 8, "aloha": 14}
LIBERO_SCALE = (0.05, 0.5)  # metres and radians per unit of delta
DROID_MAX_JOINT_DELTA = 0.2  # radians per step
_ROTATIONS = ("roll", "pitch", "yaw")
_ROTATION_ALIASES = {"rx": "roll", "ry": "pitch", "rz": "yaw"}


def reads_as_layout(layout: str, width: int, action_names: Sequence[str], choice: str = "auto") -> bool:
    """Whether a chunk `width` wide is in the layout's action convention (see the module's `auto` rule)."""
    if choice != "auto":
        return choice == "layout"
    return width == WIDTH[layout] and width != len(action_names)


def to_robot(layout: str, chunk: np.ndarray, state: np.ndarray, state_names: Sequence[str],
             action_names: Sequence[str], mode: str) -> np.ndarray:
    """`chunk` (H x the layout's width) as H x len(action_names) float32 robot actions in `mode`.

    `state` is the observation's proprio vector the chunk was computed from. Raises PolicyServerError
    (code `bad_chunk`, one sentence; nothing of the chunk runs) when the chunk is not the layout's
    width or this robot cannot take the layout's actions.
    """
    chunk = np.asarray(chunk, dtype=np.float64)
    if chunk.ndim != 2 or chunk.shape[1] != WIDTH[layout]:
        raise PolicyServerError(f"The VLA sent a chunk of shape {chunk.shape} for the {layout} layout, whose actions are "
                                f"{WIDTH[layout]} wide: check the served model's layout.", "bad_chunk")
    state = np.asarray(state, dtype=np.float64)
    if layout == "libero":
        out = _libero(chunk, state, list(state_names), list(action_names), mode)
    elif layout == "droid":
        out = _droid(chunk, state, list(state_names), list(action_names), mode)
    else:
        if len(action_names) != 14:
            _refuse(layout, action_names, mode, f"are {len(action_names)}, not ALOHA's 14 (two arms of 6 joints and a gripper)")
        out = chunk
    return np.asarray(out, dtype=np.float32)


def _libero(chunk: np.ndarray, state: np.ndarray, state_names: list[str], names: list[str], mode: str) -> np.ndarray:
    lowered = [n.lower() for n in names]
    slots = {axis: _find(lowered, (axis, f"ee_{axis}")) for axis in ("x", "y", "z")}
    grip = next((i for i, n in enumerate(lowered) if "grip" in n), None)
    if None in slots.values() or grip is None:
        _refuse("libero", names, mode, "lack x, y, z or a gripper (LIBERO's actions move the end effector)")
    rotations = {}
    for i, n in enumerate(lowered):
        axis = _ROTATION_ALIASES.get(n.removeprefix("ee_"), n.removeprefix("ee_"))
        if axis in _ROTATIONS:
            rotations[axis] = i
    groups = state_by_role(state_names)
    position = {n.lower().rsplit("_", 1)[-1]: state_names.index(n) for n in groups["ee_position"]}
    rotation = {_ROTATION_ALIASES.get(k, k): state_names.index(n)
                for n in groups["ee_rotation"] for k in [n.lower().rsplit("_", 1)[-1]]}
    if set(position) != {"x", "y", "z"}:
        _refuse("libero", names, mode, "have no end-effector position in the state (ee_x, ee_y, ee_z) to add the deltas to")
    unstated = [axis for axis in rotations if axis not in rotation]
    if unstated:
        _refuse("libero", names, mode, f"include {', '.join(unstated)}, which the state does not report "
                                       f"(no ee_{unstated[0]}), so a delta has nothing to add to")
    rows = np.zeros((len(chunk), len(names)))
    current = {axis: state[position[axis]] for axis in ("x", "y", "z")} | {a: state[rotation[a]] for a in rotations}
    delta = np.clip(chunk, -1.0, 1.0)
    for k, row in enumerate(delta):
        for j, axis in enumerate(("x", "y", "z")):
            current[axis] += row[j] * LIBERO_SCALE[0]
            rows[k, slots[axis]] = current[axis]
        for j, axis in enumerate(_ROTATIONS):
            if axis in rotations:
                current[axis] += row[3 + j] * LIBERO_SCALE[1]
                rows[k, rotations[axis]] = current[axis]
        rows[k, grip] = (1.0 - row[6]) / 2.0  # -1 open .. +1 closed -> 1 open .. 0 closed
    return rows


def _droid(chunk: np.ndarray, state: np.ndarray, state_names: list[str], names: list[str], mode: str) -> np.ndarray:
    grip = [i for i, n in enumerate(names) if "grip" in n.lower()]
    joints = [i for i, n in enumerate(names) if i not in grip]
    if len(joints) != 7 or len(grip) != 1:
        _refuse("droid", names, mode, f"are {len(joints)} joints and {len(grip)} grippers, not DROID's 7 joints and a gripper")
    joint_state = state_by_role(state_names)["joint"]
    if len(joint_state) != 7:
        _refuse("droid", names, mode, f"start from {len(joint_state)} joint positions in the state, not 7")
    q = state[[state_names.index(n) for n in joint_state]].copy()
    rows = np.zeros((len(chunk), len(names)))
    for k, row in enumerate(chunk):
        velocity = row[:7] / max(1.0, float(np.abs(row[:7]).max()))  # DROID scales so no joint exceeds 1
        q += velocity * DROID_MAX_JOINT_DELTA
        rows[k, joints] = q
        rows[k, grip[0]] = 0.0 if row[7] > 0.5 else 1.0  # DROID: 1 closed; coachlab's grip: 1 open
    return rows


def _find(lowered: list[str], candidates: tuple[str, ...]) -> int | None:
    return next((lowered.index(c) for c in candidates if c in lowered), None)


def _refuse(layout: str, names: Sequence[str], mode: str, why: str) -> None:
    raise PolicyServerError(f"The VLA answers {layout.upper()}'s {WIDTH[layout]}-d "
                            f"actions but this robot's {mode} actions ({', '.join(names)}) {why}, so the robot holds: "
                            "serve a model fine-tuned on this robot (its own actions, actions=robot) or drive a robot "
                            "this layout was made for.", "bad_chunk")
