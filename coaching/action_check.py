"""The check an action passes before it reaches a robot: finite, as wide as its control mode, in bounds.

It owns `check_action` and `ActionRejected`. The robot bridge server runs it on every `act` (the
last hop before a lab's hardware), the sim robot on every `act` it executes, and the action chunker
the width part on every VLA reply (`policy_client.chunk_check`), so a NaN, a 7-d action for a 6-d
arm or a joint target past its limit is refused with one sentence instead of moving the robot.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coaching.robot import RobotDescription


class ActionRejected(ValueError):
    """An action the robot must not execute (non-finite, wrong width, out of bounds, unknown mode)."""


def check_action(description: RobotDescription, action: Any, mode: str) -> np.ndarray:
    """`action` as a float64 vector of shape (A,), A = description.action_dim(mode), if it is safe to
    execute; else ActionRejected with one sentence naming the offending entries and what to do.

    Bounds come from `description.action_bounds[mode]` = (low, high) in the action's own units
    (metres, radians, grip 0..1); a robot that gives none gets only the finiteness and width checks.
    """
    if mode not in description.action_names:
        raise ActionRejected(f"Unknown control mode {mode!r}: {description.name} takes "
                             f"{' or '.join(description.action_names)}.")
    names = description.action_names[mode]
    try:
        vec = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        raise ActionRejected(f"The {mode} action is not a vector of numbers: send {len(names)} numbers "
                             f"({', '.join(names)}).") from None
    if vec.ndim != 1 or vec.shape[0] != len(names):
        raise ActionRejected(f"The {mode} action has shape {vec.shape} but {description.name} takes "
                             f"{len(names)} numbers ({', '.join(names)}); the robot holds. Send actions of that "
                             f"width (is the VLA trained for this robot?).")
    bad = [names[i] for i in np.flatnonzero(~np.isfinite(vec))]
    if bad:
        raise ActionRejected(f"The {mode} action has non-finite {', '.join(bad)} (NaN or infinity); the robot "
                             f"holds. Check the VLA or driver that produced it.")
    bounds = description.action_bounds.get(mode)
    if bounds is not None:
        low, high = np.asarray(bounds[0], dtype=np.float64), np.asarray(bounds[1], dtype=np.float64)
        out = [f"{names[i]}={vec[i]:.3g} (allowed {low[i]:.3g}..{high[i]:.3g})"
               for i in np.flatnonzero((vec < low) | (vec > high))]
        if out:
            raise ActionRejected(f"The {mode} action is out of range: {'; '.join(out)}; the robot holds. "
                                 f"Send targets within the robot's limits.")
    return vec
