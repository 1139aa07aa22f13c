"""A policy without a model, for measuring the wire and testing clients and servers.

It answers with an H x A chunk computed from the state (so a reply provably belongs to its
request) and, if asked, echoes the images it received. `prompt["delay_s"]` makes it as slow as a
real model, to exercise timeouts.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from policy_client.base_policy import BasePolicy


class EchoPolicy(BasePolicy):
    def __init__(self, chunk_length: int = 50, action_dim: int = 14, echo_images: bool = False):
        self.chunk_length, self.action_dim, self.echo_images = chunk_length, action_dim, echo_images
        self.resets = 0

    @property
    def metadata(self) -> dict[str, Any]:
        return {"name": "echo", "action_dim": self.action_dim, "chunk_length": self.chunk_length,
                "control_modes": ["ee", "joint"]}

    def infer(self, observation: dict[str, Any], prompt: dict[str, Any]) -> dict[str, Any]:
        if prompt.get("delay_s"):
            time.sleep(float(prompt["delay_s"]))
        state = np.asarray(observation["state"], dtype=np.float32).ravel()
        row = np.zeros(self.action_dim, np.float32)
        row[:min(state.size, self.action_dim)] = state[:self.action_dim]
        actions = row + np.arange(self.chunk_length, dtype=np.float32)[:, None]
        info: dict[str, Any] = {"subtask": prompt.get("subtask"), "resets": self.resets}
        if self.echo_images:
            info["images"] = observation.get("images", {})
        return {"actions": actions, "info": info}

    def reset(self, seed: int | None = None) -> None:
        self.resets += 1


def from_options(**options: Any) -> EchoPolicy:
    return EchoPolicy(**options)
