"""A coachlab policy seen as an openpi policy: what `coachlab vla-server --format openpi` serves.

A coachlab policy takes `infer(observation, prompt)`; an openpi policy takes one flat dict keyed like
its training data. `OpenPIPolicyAdapter` reads each request through a layout (`openpi_layout.py`),
calls the policy, and answers as openpi's policies do: `actions` (H x A float32) with the policy's
`info` entries beside it at the top level. Its `metadata` (the frame sent on connect) is the policy's
own metadata plus a `coachlab` entry naming the layout and the optional keys it reads, which is how
coachlab's own client knows it may send them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from policy_client.openpi_layout import COACHLAB_KEYS, from_openpi, get_layout, layout_keys

RESERVED = ("actions", "server_timing")  # reply keys an info entry may not take over


class PolicyReplyError(RuntimeError):
    """The served policy answered something that is not an action chunk."""


class OpenPIPolicyAdapter:
    """`infer(request) -> {"actions": H x A float32, **info}` around a coachlab policy; `reset()` passes on."""

    def __init__(self, policy: Any, layout: str = "libero"):
        self.policy, self.layout_name, self.layout = policy, layout, get_layout(layout)

    @property
    def metadata(self) -> dict[str, Any]:
        meta = dict(getattr(self.policy, "metadata", {}) or {})
        meta.setdefault("name", type(self.policy).__name__)
        meta["coachlab"] = {"format": "openpi", "layout": self.layout_name, "keys": layout_keys(self.layout),
                            "optional_keys": list(COACHLAB_KEYS)}
        return meta

    def infer(self, request: Any) -> dict[str, Any]:
        """Raises OpenPIRequestError (a request the layout cannot read), PolicyReplyError (no H x A
        `actions` in the policy's answer), or whatever the policy raised."""
        observation, prompt = from_openpi(self.layout, self.layout_name, request)
        result = self.policy.infer(observation, prompt)
        if not isinstance(result, dict) or "actions" not in result:
            raise PolicyReplyError("The policy returned no 'actions'; infer must return a dict with them.")
        actions = np.asarray(result["actions"], dtype=np.float32)
        if actions.ndim != 2:
            raise PolicyReplyError(f"The policy returned actions of shape {actions.shape}; they must be H x A.")
        info = {k: v for k, v in (result.get("info") or {}).items() if k not in RESERVED}
        return {**info, "actions": actions}

    def reset(self, seed: int | None = None) -> None:
        if hasattr(self.policy, "reset"):
            self.policy.reset(seed)
