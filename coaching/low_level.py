"""Reach the low-level policy: a remote VLA at an address, or the embedded sim skill policy served
by a child process on loopback. Either way the loop talks to it over the wire, never in-process.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from policy_client import BasePolicy, connect
from policy_client.local_server import LocalPolicyServer

SIM_POLICY_FACTORY = "sim.skill_policy:from_options"
VLA_ENV = "COACHLAB_VLA"


@contextmanager
def low_level_policy(address: str | None = None, sim_options: dict[str, Any] | None = None,
                     timeout_s: float = 10.0) -> Iterator[BasePolicy]:
    """Yield a connected policy client; `address` (or $COACHLAB_VLA) wins over the embedded sim policy."""
    address = address or os.environ.get(VLA_ENV)
    server = None if address else LocalPolicyServer(SIM_POLICY_FACTORY, sim_options)
    client = connect(address or server.zmq_address, timeout_s=timeout_s)
    try:
        yield client
    finally:
        client.close()
        if server is not None:
            server.close()
