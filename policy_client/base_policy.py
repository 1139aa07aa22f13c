"""The one interface every low-level policy meets: `infer(observation, prompt) -> dict`.

A policy object served by `policy_client.serve`, the ZMQ client and the openpi client all look
the same to the control loop. `observation` is `{"images": {camera: HxWx3 uint8}, "state": ...,
"timestamp": ...}` (plus the sim's privileged `env_state`); `prompt` follows DESIGN.md (`task`,
`subtask`, optional `subgoal_images`, optional `metadata`, `control_mode`). The reply holds
`actions` (H x A float32) and an `info` dict.
"""

from __future__ import annotations

import abc
from typing import Any


class BasePolicy(abc.ABC):
    # The LocalPolicyServer keeping this VLA's process alive, when the caller started that process
    # (coaching/vla.py sets it); None for a server someone else runs.
    supervisor: Any = None

    @abc.abstractmethod
    def infer(self, observation: dict[str, Any], prompt: dict[str, Any]) -> dict[str, Any]:
        """Return {"actions": H x A array, "info": {...}} for this observation and prompt."""

    def reset(self, seed: int | None = None) -> None:
        """Forget per-episode state (a new episode begins)."""

    @property
    def metadata(self) -> dict[str, Any]:
        """What the policy tells clients in the handshake (action_dim, chunk_length, ...)."""
        return {}
