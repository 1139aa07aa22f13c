"""Reach the low-level policy: a remote VLA at an address, or the embedded sim skill policy served
by a child process on loopback. Either way the loop talks to it over the wire, never in-process.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from policy_client import BasePolicy, connect
from policy_client.local_server import LocalPolicyServer
from coaching.robot import RobotDescription

SIM_POLICY_FACTORY = "sim.skill_policy:from_options"
VLA_ENV = "COACHLAB_VLA"


@contextmanager
def low_level_policy(address: str | None = None, sim_options: dict[str, Any] | None = None,
                     timeout_s: float = 10.0) -> Iterator[BasePolicy]:
    """Yield a connected policy client; `address` (or $COACHLAB_VLA) wins over the embedded sim policy."""
    address = address or os.environ.get(VLA_ENV)
    server = None if address else LocalPolicyServer(SIM_POLICY_FACTORY, sim_options)
    try:
        client = connect(address or server.zmq_address, timeout_s=timeout_s)
    except BaseException:
        if server is not None:
            server.close()
        raise
    try:
        yield client
    finally:
        client.close()
        if server is not None:
            server.close()


class PolicyDoesNotFit(ValueError):
    """The low-level policy's handshake says it cannot drive this robot."""


def check_fits(hello: dict[str, Any], robot: RobotDescription, mode: str) -> None:
    """Refuse early, with one sentence, a VLA whose action space does not match the robot's."""
    modes = hello.get("control_modes")
    if modes and mode not in modes:
        raise PolicyDoesNotFit(f"The low-level policy {hello.get('policy', '')!r} acts in {', '.join(modes)} mode, "
                               f"not {mode}; choose one of those control modes.")
    dim = hello.get("action_dim")
    if dim is not None and mode in robot.action_names and dim != robot.action_dim(mode):
        raise PolicyDoesNotFit(f"The low-level policy outputs {dim}-d actions but {robot.name} takes "
                               f"{robot.action_dim(mode)} in {mode} mode; serve a policy trained for this robot.")
