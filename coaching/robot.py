"""The `Robot` seam: what every robot (the MuJoCo sim, a bridge to real hardware) offers the loop.

It owns the observation and description types, the small abstract base and `NotReset`; nothing here
knows how a robot is implemented. A lab's robot plugs in by implementing the base's five methods.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CONTROL_MODES = ("ee", "joint")


@dataclass
class Observation:
    """One snapshot of the robot.

    `env_state` is privileged ground truth that only a simulator has; only the sim skill policy
    and the sim's success checks may read it (a real robot leaves it None).

    `task_progress` is what the robot itself can tell about the current task, as
    `{"success": bool, "steps_left": int}`: the sim from its success checks, a real robot from a
    success detector if it has one, else None. Whatever drives episodes (the autonomous runner)
    reads success from here, so it never needs to know which robot it drives.
    """

    images: dict[str, np.ndarray]  # camera name -> HxWx3 uint8
    state: np.ndarray  # proprioception, see RobotDescription.state_names
    timestamp: float  # seconds on the robot's clock
    env_state: dict[str, Any] | None = None
    task_progress: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "state": self.state, "timestamp": self.timestamp, "env_state": self.env_state}


@dataclass(frozen=True)
class RobotDescription:
    """What the loop and the VLA need to know about a robot."""

    name: str
    cameras: tuple[str, ...]
    image_size: tuple[int, int]  # (height, width)
    state_names: tuple[str, ...]
    action_names: dict[str, tuple[str, ...]]  # control mode -> names of the action vector
    control_hz: float
    extra: dict[str, Any] = field(default_factory=dict)
    # control mode -> (low, high) per action entry, in its units; the bridge refuses actions outside
    # them (coaching/action_check.py). A mode without bounds is checked for width and finiteness only.
    action_bounds: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)

    @property
    def control_modes(self) -> tuple[str, ...]:
        return tuple(self.action_names)

    def action_dim(self, mode: str) -> int:
        return len(self.action_names[mode])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RobotDescription":
        """The inverse of `to_dict` (keys it does not know go back into `extra`)."""
        known = {"name", "cameras", "image_size", "state_names", "action_names", "control_hz", "action_bounds"}
        return cls(name=d["name"], cameras=tuple(d["cameras"]), image_size=tuple(d["image_size"]),
                   state_names=tuple(d["state_names"]),
                   action_names={k: tuple(v) for k, v in d["action_names"].items()},
                   control_hz=float(d["control_hz"]), extra={k: v for k, v in d.items() if k not in known},
                   action_bounds={k: (tuple(map(float, lo)), tuple(map(float, hi)))
                                  for k, (lo, hi) in (d.get("action_bounds") or {}).items()})

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cameras": list(self.cameras),
            "image_size": list(self.image_size),
            "state_names": list(self.state_names),
            "action_names": {k: list(v) for k, v in self.action_names.items()},
            "control_hz": self.control_hz,
            "action_bounds": {k: [list(lo), list(hi)] for k, (lo, hi) in self.action_bounds.items()},
            **self.extra,
        }


class NotReset(RuntimeError):
    """A robot asked to observe, act or hold before its first `reset`; the message says to reset it."""


class Robot(abc.ABC):
    """A robot the control loop can drive at `describe().control_hz`. `observe`, `act` and `hold` come
    after a `reset`; a robot that cannot serve them before one raises NotReset (one sentence)."""

    @abc.abstractmethod
    def describe(self) -> RobotDescription: ...

    @abc.abstractmethod
    def reset(self, task_family: str, seed: int) -> Observation:
        """Set up a new episode of `task_family` (the sim builds a seeded scene of it) and observe."""

    @abc.abstractmethod
    def observe(self) -> Observation: ...

    @abc.abstractmethod
    def act(self, action: np.ndarray, mode: str = "ee") -> None:
        """Apply one action and advance by one control period."""

    @abc.abstractmethod
    def hold(self) -> None:
        """Keep the current pose for one control period: the safe default when no action is due."""

    def close(self) -> None:
        """Release cameras, sockets, renderers."""
