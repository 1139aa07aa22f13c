"""The check every VLA reply's action chunk passes before any of it is queued or executed.

It owns `check_chunk`: the chunk must be a finite H x A array whose width A is the robot's action
width in the active control mode. The action chunker runs it on every reply (prefetched or not),
the sim lookahead on every reply it previews, so a VLA trained for another robot (7-d actions for a
6-d arm, or 4-d ones) is refused in one sentence instead of being executed with index 5 read as
the gripper, or crashing with an IndexError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from policy_client.errors import PolicyServerError


def check_chunk(actions: Any, action_names: Sequence[str] | None = None, mode: str | None = None) -> np.ndarray:
    """`actions` as a float32 (H, A) array; PolicyServerError(code "bad_chunk") with one sentence if it
    is not 2-D, has a NaN or infinity, or (when `action_names` is given) A != len(action_names)."""
    chunk = np.asarray(actions, dtype=np.float32) if actions is not None else np.empty(0, np.float32)
    if chunk.ndim != 2 or not np.isfinite(chunk).all():
        raise PolicyServerError(f"The VLA sent an action chunk of shape {chunk.shape} (or with NaNs); it must be a "
                                "finite H x A array: fix the policy's output.", "bad_chunk")
    if action_names is not None and chunk.shape[1] != len(action_names):
        in_mode = f" in {mode} mode" if mode else ""
        raise PolicyServerError(f"The VLA sent {chunk.shape[1]}-wide actions (a {chunk.shape[0]} x {chunk.shape[1]} "
                                f"chunk) but this robot takes {len(action_names)}{in_mode} "
                                f"({', '.join(action_names)}), so the robot holds: serve a VLA trained for this robot "
                                f"or fix its action output to that layout.", "bad_chunk")
    return chunk
