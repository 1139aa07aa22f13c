"""Reach the VLA: a remote server at an address, or an embedded policy factory (the app's embedded
default) served by a child process on loopback, which is supervised (restarted when it dies). Either way the loop talks to it over the wire,
never in-process. Also the handshake check that a VLA fits the robot, and telling a client that
adapts itself to the robot (the openpi client's layouts) which robot it drives (`fit_vla`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from coaching.robot import RobotDescription
from policy_client import BasePolicy, connect
from policy_client.local_server import LocalPolicyServer

VLA_ENV = "COACHLAB_VLA"
VLA_KEY_ENV = "COACHLAB_VLA_KEY"  # the VLA server's CURVE public key (policy_client/curve.py)


@contextmanager
def connect_vla(address: str | None = None, embedded_factory: str | None = None,
                     options: dict[str, Any] | None = None, timeout_s: float = 10.0,
                     server_key: str | None = None) -> Iterator[BasePolicy]:
    """Yield a connected VLA client: at `address` (or $COACHLAB_VLA) if given, else `embedded_factory`
    (`module:callable`, called with `options`) served by a child process. ValueError if neither.
    `server_key` (or $COACHLAB_VLA_KEY) is the remote server's public key when it uses CURVE."""
    address = address or os.environ.get(VLA_ENV)
    server_key = (server_key or os.environ.get(VLA_KEY_ENV)) if address else None
    if not address and not embedded_factory:
        raise ValueError(f"No VLA to connect to: give its address (--vla or ${VLA_ENV}).")
    server = None if address else LocalPolicyServer(embedded_factory, options)
    try:
        client = connect(address or server.zmq_address, timeout_s=timeout_s, server_key=server_key)
    except BaseException:
        if server is not None:
            server.close()
        raise
    if server is not None:  # we started it, so we keep it alive and say so, rather than "start one"
        client.supervisor = server
        client.start_hint = "its process was started by coachlab, which restarts it: try again in a few seconds"
        client.timeout_hint = "If its process died, coachlab restarts it: try again in a few seconds"
        server.on_restart(lambda new_address: client.retarget(new_address))
    try:
        yield client
    finally:
        client.close()
        if server is not None:
            server.close()


class VLADoesNotFit(ValueError):
    """The VLA's handshake says it cannot drive this robot."""


def check_fits(hello: dict[str, Any], robot: RobotDescription, mode: str) -> None:
    """Refuse early, with one sentence, a VLA whose action space does not match the robot's."""
    modes = hello.get("control_modes")
    if modes and mode not in modes:
        raise VLADoesNotFit(f"The VLA {hello.get('policy', '')!r} acts in {', '.join(modes)} mode, "
                               f"not {mode}; choose one of those control modes.")
    dim = hello.get("action_dim")
    if dim is not None and mode in robot.action_names and dim != robot.action_dim(mode):
        raise VLADoesNotFit(f"The VLA outputs {dim}-d actions but {robot.name} takes "
                               f"{robot.action_dim(mode)} in {mode} mode; serve a policy trained for this robot.")


def fit_vla(vla: Any, robot: RobotDescription, mode: str) -> None:
    """`check_fits`, then tell a client that adapts itself to the robot (the openpi client builds its
    layout from the robot's state names and cameras) which robot it drives; VLADoesNotFit in one
    sentence when it cannot."""
    check_fits(vla.metadata, robot, mode)
    fit = getattr(vla, "fit_robot", None)
    if fit is not None:
        try:
            fit(list(robot.state_names), dict(robot.action_names), list(robot.cameras))
        except ValueError as e:
            raise VLADoesNotFit(str(e)) from None
