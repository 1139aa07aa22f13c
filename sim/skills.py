"""Motion plans for the sim skill policy: from a grounded skill and the sim state to ee keyframes.

Each skill looks at the current `env_state` and returns the keyframes still to go, so the policy
is closed-loop: re-planned from what the scene is now at every chunk. `Attempt` carries the little
memory a real VLA also has within one instruction (did I already close on it?) and the noise that
makes grasps miss and slip at a realistic rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.ik import wrap_half_turn
from sim.scene import GRIPPER_MAX_OPENING

CARRY_Z = 0.20
APPROACH_DZ = 0.07
GRIP_CLOSED = 0.0
GRIP_OPEN = 1.0
SITE_ABOVE_TIPS = 0.01  # the grip site sits this far above the fingertips


@dataclass
class Keyframe:
    pos: np.ndarray
    yaw: float
    grip: float  # 0 closed .. 1 open
    dwell: int = 0  # control steps to hold once reached


@dataclass
class Attempt:
    """One instruction's memory: noise drawn once per instruction, and whether the jaw closed."""

    grasp_offset: np.ndarray
    slip_fraction: float | None  # drop the item at this fraction of the carry, or never
    closed: bool = False
    slipped: bool = False
    start_xy: np.ndarray = field(default_factory=lambda: np.zeros(2))
    push_start: np.ndarray | None = None


def _xyz(v) -> np.ndarray:
    return np.asarray(v, dtype=float)


def hold(env: dict, grip: float | None = None) -> list[Keyframe]:
    g = env["gripper"]
    if grip is None:
        grip = GRIP_CLOSED if g["held"] or g["opening"] < 0.03 else GRIP_OPEN
    return [Keyframe(_xyz(g["pos"]), g["yaw"], grip)]


def rise(env: dict, grip: float) -> list[Keyframe]:
    g = env["gripper"]
    pos = _xyz(g["pos"])
    return [Keyframe(np.array([pos[0], pos[1], max(pos[2], CARRY_Z)]), g["yaw"], grip)]


def approach(ee: np.ndarray, target: np.ndarray, yaw: float, grip: float, height: float = APPROACH_DZ) -> list[Keyframe]:
    """Go to `target` from straight above it; skip what is already done so re-planning mid-way
    never sends the arm back up (which would make a closed-loop policy oscillate)."""
    above = target + [0, 0, height]
    if np.linalg.norm(ee[:2] - target[:2]) < 0.012 and ee[2] < above[2] + 0.01:
        return [Keyframe(target, yaw, grip, dwell=1)]
    frames = []
    if np.linalg.norm(ee[:2] - target[:2]) > 0.05:  # travel high: drawer fronts and bin walls stand in the way
        transit = max(above[2], CARRY_Z)
        if ee[2] < transit - 0.02:
            frames.append(Keyframe(np.array([*ee[:2], transit]), yaw, grip))
        frames.append(Keyframe(np.array([*target[:2], transit]), yaw, grip))
    return [*frames, Keyframe(above, yaw, grip), Keyframe(target, yaw, grip, dwell=1)]


def _grasp_yaw(env: dict, obj: str) -> tuple[float, float]:
    """Yaw that closes the jaw across the item's narrow side, clear of its neighbours; and width."""
    o = env["objects"][obj]
    hx, hy, _ = o["half_size"]
    candidates = [(o["yaw"] + np.pi / 2, hy)] if hx > hy + 0.005 else [(o["yaw"], hx), (o["yaw"] + np.pi / 2, hy)]
    centre = _xyz(o["pos"][:2])

    def clearance(yaw: float) -> float:
        axis = np.array([np.cos(yaw), np.sin(yaw)])
        worst = 1.0
        for name, other in env["objects"].items():
            if name != obj:
                d = _xyz(other["pos"][:2]) - centre
                worst = min(worst, np.linalg.norm(d) - 0.04 * abs(axis @ d) / max(np.linalg.norm(d), 1e-6))
        return worst

    yaw, half = max(candidates, key=lambda c: clearance(c[0]))
    return wrap_half_turn(yaw), half


def pick(env: dict, obj: str, attempt: Attempt) -> tuple[list[Keyframe], str]:
    g, o = env["gripper"], env["objects"][obj]
    pos = _xyz(o["pos"])
    yaw, half = _grasp_yaw(env, obj)
    if g["held"] == obj:
        return rise(env, GRIP_CLOSED), "holding"
    between = _between_fingers(env, obj)
    if attempt.closed:
        if between and g["opening"] > 2 * half - 0.01:
            # still squeezing: finish the close, then lift
            return [Keyframe(_xyz(g["pos"]), g["yaw"], GRIP_CLOSED, dwell=3), *rise(env, GRIP_CLOSED)], "closing"
        if g["opening"] < 2 * half + 0.01:
            return hold(env, GRIP_CLOSED), "missed"  # a real VLA stalls here until re-prompted
        attempt.closed = False  # the jaw never got to close: try the approach again
    grip_open = min(1.0, (2 * half + 0.035) / GRIPPER_MAX_OPENING)
    target = pos.copy()
    target[:2] += attempt.grasp_offset
    target[2] = max(pos[2], 0.015 + SITE_ABOVE_TIPS)
    ee = _xyz(g["pos"])
    if np.linalg.norm(ee - target) < 0.008:
        attempt.closed = True  # this chunk closes the jaw; what happens next is physics
        frames = [Keyframe(target, yaw, GRIP_CLOSED, dwell=4)]
    else:
        frames = approach(ee, target, yaw, grip_open, APPROACH_DZ + o["half_size"][2])
        frames.append(Keyframe(target, yaw, GRIP_CLOSED, dwell=4))
    frames.append(Keyframe(np.array([*target[:2], CARRY_Z]), yaw, GRIP_CLOSED))
    return frames, "approaching"


def _between_fingers(env: dict, obj: str) -> bool:
    g, o = env["gripper"], env["objects"][obj]
    d = _xyz(o["pos"][:2]) - _xyz(g["pos"][:2])
    return np.linalg.norm(d) < 0.025 and abs(o["pos"][2] - g["pos"][2]) < 0.05


def drop_point(env: dict, place: str, obj: str) -> np.ndarray:
    """Where to release `obj` over `place`: the free slot farthest from what is already there."""
    p = env["places"][place]
    cx, cy = p["pos"]
    hx, hy = p["half"]
    if "open_region_x" in p:  # drawer: only the pulled-out part is open from above
        lo, hi = p["open_region_x"]
        cx, hx = (lo + hi) / 2, (hi - lo) / 2
    slots = [np.array([cx + sx * hx * 0.55, cy + sy * hy * 0.55]) for sx in (-1, 0, 1) for sy in (-1, 0, 1)]
    others = [_xyz(o["pos"][:2]) for n, o in env["objects"].items() if n != obj]
    if not others:
        return np.array([cx, cy])
    return max(slots, key=lambda s: min(np.linalg.norm(s - q) for q in others) - 0.3 * np.linalg.norm(s - [cx, cy]))


def place(env: dict, obj: str, target: str, attempt: Attempt, inside: bool) -> tuple[list[Keyframe], str]:
    g, o = env["gripper"], env["objects"][obj]
    if inside and g["held"] != obj:
        return rise(env, GRIP_OPEN), "placed"
    if g["held"] != obj:
        return hold(env), "not holding it"
    p = env["places"][target]
    xy = drop_point(env, target, obj)
    release_z = p["floor"] + p["height"] + 2 * o["half_size"][2] + 0.02
    carry_z = max(CARRY_Z, release_z + 0.06)
    ee = _xyz(g["pos"])
    if attempt.slip_fraction is not None and not attempt.slipped:
        total = np.linalg.norm(xy - attempt.start_xy)
        if total > 0.05 and np.linalg.norm(ee[:2] - attempt.start_xy) > attempt.slip_fraction * total:
            attempt.slipped = True  # the noise model's slip: the jaw lets go mid-carry
            return [Keyframe(ee, g["yaw"], GRIP_OPEN, dwell=5)], "slipped"
    frames = approach(ee, np.array([*xy, release_z]), g["yaw"], GRIP_CLOSED, carry_z - release_z)
    frames += [
        Keyframe(np.array([*xy, release_z]), g["yaw"], GRIP_OPEN, dwell=4),
        Keyframe(np.array([*xy, carry_z]), g["yaw"], GRIP_OPEN),
    ]
    return frames, "carrying"


def open_drawer(env: dict) -> tuple[list[Keyframe], str]:
    d, g = env["drawer"], env["gripper"]
    if d["opening"] > 0.9 * d["travel"]:
        return rise(env, GRIP_OPEN), "open"
    h, ee = _xyz(d["handle"]), _xyz(g["pos"])
    pulled = h - [d["travel"] - d["opening"] + 0.01, 0, 0]
    grip_handle = 0.5  # narrow enough that the inner finger fits between handle and front
    on_handle = np.linalg.norm(ee - h) < 0.02 and g["opening"] < 0.03
    frames = []
    if not on_handle:
        frames = [*approach(ee, h, 0.0, grip_handle), Keyframe(h, 0.0, GRIP_CLOSED, dwell=4)]
    frames += [Keyframe(pulled, 0.0, GRIP_CLOSED, dwell=1), Keyframe(pulled, 0.0, GRIP_OPEN, dwell=3),
               Keyframe(pulled + [0, 0, APPROACH_DZ], 0.0, GRIP_OPEN)]
    return frames, "opening"


def close_drawer(env: dict) -> tuple[list[Keyframe], str]:
    d, g = env["drawer"], env["gripper"]
    if d["opening"] < 0.01:
        return rise(env, GRIP_CLOSED), "closed"
    h, ee = _xyz(d["handle"]), _xyz(g["pos"])
    behind = h - [0.045, 0, 0]
    pushed = h + [d["opening"] + 0.01, 0, 0]
    frames = []
    in_line = abs(ee[1] - h[1]) < 0.02 and abs(ee[2] - h[2]) < 0.02 and ee[0] < h[0] - 0.015
    if not in_line:
        frames += [Keyframe(behind + [0, 0, APPROACH_DZ + 0.03], 0.0, GRIP_CLOSED), Keyframe(behind, 0.0, GRIP_CLOSED)]
    frames += [Keyframe(pushed, 0.0, GRIP_CLOSED, dwell=2), Keyframe(pushed - [0.05, 0, -APPROACH_DZ], 0.0, GRIP_CLOSED)]
    return frames, "closing"


DIRECTIONS = {"left": (0, 1), "right": (0, -1), "forward": (1, 0), "back": (-1, 0)}


def push(env: dict, obj: str, direction: str, attempt: Attempt) -> tuple[list[Keyframe], str]:
    o, g = env["objects"][obj], env["gripper"]
    pos = _xyz(o["pos"])
    if attempt.push_start is None:
        attempt.push_start = pos[:2].copy()
    d = np.array(DIRECTIONS[direction], dtype=float)
    if (pos[:2] - attempt.push_start) @ d > 0.08:
        return rise(env, GRIP_CLOSED), "pushed"
    z = max(0.02, min(pos[2], 0.04)) + SITE_ABOVE_TIPS
    start = np.array([*(pos[:2] - d * (max(o["half_size"][:2]) + 0.035)), z])
    end = np.array([*(attempt.push_start + d * 0.10 - d * (max(o["half_size"][:2]) + 0.02)), z])
    yaw = float(np.arctan2(d[0], -d[1]))  # jaw closed across the push line: the pad face leads
    ee = _xyz(g["pos"])
    frames = []
    if np.linalg.norm(ee[:2] - start[:2]) > 0.02 or ee[2] > z + 0.03:
        frames += [Keyframe(start + [0, 0, APPROACH_DZ], yaw, GRIP_CLOSED), Keyframe(start, yaw, GRIP_CLOSED)]
    frames += [Keyframe(end, yaw, GRIP_CLOSED, dwell=1), Keyframe(end + [0, 0, APPROACH_DZ], yaw, GRIP_CLOSED)]
    return frames, "pushing"


def go_home(env: dict) -> tuple[list[Keyframe], str]:
    return [Keyframe(_xyz(env["home"]), 0.0, GRIP_OPEN)], "homing"


def rollout(env: dict, frames: list[Keyframe], horizon: int, control_hz: float,
            speed: float = 0.30, yaw_rate: float = 2.0) -> np.ndarray:
    """Sample keyframes into `horizon` ee actions [x, y, z, yaw, pitch, grip] at bounded speed."""
    g = env["gripper"]
    pos, yaw = _xyz(g["pos"]), float(g["yaw"])
    grip = frames[0].grip if frames else GRIP_OPEN
    step, turn = speed / control_hz, yaw_rate / control_hz
    out, queue = [], list(frames)
    dwell_left = None
    while len(out) < horizon:
        if queue:
            kf = queue[0]
            grip = kf.grip  # the jaw moves with the arm toward each keyframe
            delta = kf.pos - pos
            dist = np.linalg.norm(delta)
            pos = kf.pos.copy() if dist <= step else pos + delta / dist * step
            dyaw = wrap_half_turn(kf.yaw - yaw)
            yaw = yaw + float(np.clip(dyaw, -turn, turn))
            if dist <= step and abs(dyaw) <= turn:
                dwell_left = kf.dwell if dwell_left is None else dwell_left - 1
                if dwell_left <= 0:
                    queue.pop(0)
                    dwell_left = None
        out.append([*pos, yaw, 0.0, grip])
    return np.asarray(out, dtype=np.float32)
