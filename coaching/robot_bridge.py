"""The robot bridge: any `Robot` served over ZMQ by its own process, and the `Robot` that talks to it.

A lab runs `RobotBridgeServer(its_robot, "tcp://10.0.0.5:5560", keys=load_server_keys(DIR)).serve_forever()`
next to its hardware (or `coachlab robot-server --keys DIR` for the sim) and starts the app with
`--robot zmq://robot-pc:5560 --robot-key KEY`. Beyond loopback the bridge refuses to start without
CURVE keys (policy_client/curve.py, docs/robot.md): a client without the bridge's public key, or
with a wrong one, never completes the handshake, so it cannot move the robot. The messages reuse the policy wire format (docs/protocol.md):
`describe` -> `description`, `reset {task_family, seed}` / `observe` -> `observation` (images as raw
frames), `act {action, mode}` / `hold` -> `ok`. The server uses its robot from the one thread that
serves, since renderers and drivers are often bound to the thread that opened them.

The server is the last hop before the hardware, so it checks every `act` (coaching/action_check.py):
a non-finite, wrong-width or out-of-range action, or an unknown control mode, is not executed; the
robot holds and the reply is a `bad_action` error saying why. A robot asked to `observe`, `act` or
`hold` before any `reset` (coaching.robot.NotReset) answers a `not_reset` error saying to reset it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from policy_client.curve import ServerKeys, read_public_key
from policy_client.protocol import Message, ProtocolError
from policy_client.server import ServerConfig, ZmqServer
from policy_client.zmq_client import ZmqRequester
from coaching.action_check import ActionRejected, check_action
from coaching.robot import NotReset, Observation, Robot, RobotDescription


ROBOT_KEY_ENV = "COACHLAB_ROBOT_KEY"


class RobotBridgeServer(ZmqServer):
    failure_code, failure_text = "robot_error", "The robot failed"
    what = "robot bridge"

    def __init__(self, robot: Robot, address: str, config: ServerConfig | None = None, keys: ServerKeys | None = None):
        """`keys` (policy_client.curve.load_server_keys) make it a CURVE server; bound beyond loopback
        it refuses to start without them (InsecureBind)."""
        self.robot = robot
        self._description = robot.describe()  # what every `act` is checked against
        super().__init__(address, config or ServerConfig(name="coachlab-robot-bridge"), keys)

    def answer(self, request: Message) -> Message:
        try:
            return self._answer(request)
        except NotReset as e:  # observe, act or hold before any reset: say so, not an internal error
            raise ProtocolError("not_reset", str(e)) from None

    def _answer(self, request: Message) -> Message:
        body = request.body
        if request.kind == "describe":
            return Message("description", request.id, self.robot.describe().to_dict())
        if request.kind == "reset":
            if not isinstance(body.get("task_family"), str) or not isinstance(body.get("seed"), int):
                raise ProtocolError("malformed", "reset needs a 'task_family' text and an integer 'seed'.")
            return Message("observation", request.id,
                           _observation_body(self.robot.reset(body["task_family"], body["seed"])))
        if request.kind == "observe":
            return Message("observation", request.id, _observation_body(self.robot.observe()))
        if request.kind == "act":
            action = body.get("action")
            if not isinstance(action, np.ndarray) or action.ndim != 1:
                self.robot.hold()
                raise ProtocolError("malformed", "act needs an 'action' vector.")
            try:
                action = check_action(self._description, action, str(body.get("mode", "ee")))
            except ActionRejected as e:
                self.robot.hold()  # keep still rather than keep the last set-point racing on
                raise ProtocolError("bad_action", str(e)) from None
            self.robot.act(action, str(body.get("mode", "ee")))
            return Message("ok", request.id, {})
        if request.kind == "hold":
            self.robot.hold()
            return Message("ok", request.id, {})
        if request.kind == "ping":
            return Message("pong", request.id, {})
        raise ProtocolError("unknown_kind", f"A robot bridge does not accept {request.kind!r} messages.")


class BridgeRobot(Robot):
    """A robot in another process, reached at `tcp://host:port` (the app's `--robot zmq://host:port`)."""

    def __init__(self, address: str, timeout_s: float = 5.0, server_key: str | None = None):
        """`server_key` (or $COACHLAB_ROBOT_KEY): the bridge's CURVE public key, 40 characters or a .key file."""
        key = server_key or os.environ.get(ROBOT_KEY_ENV)
        self._wire = ZmqRequester(address, timeout_s, read_public_key(key) if key else None)
        self._wire.peer = "robot bridge"
        self._wire.start_hint = "start the robot's bridge process (coachlab robot-server for the sim) or fix --robot"
        self._wire.key_hint = f"--robot-key or ${ROBOT_KEY_ENV}"
        try:
            self._description = RobotDescription.from_dict(self._wire.request("describe", {}).body)
        except BaseException:
            self._wire.close()
            raise

    def describe(self) -> RobotDescription:
        return self._description

    def reset(self, task_family: str, seed: int) -> Observation:
        return _observation(self._wire.request("reset", {"task_family": task_family, "seed": int(seed)},
                                               timeout_s=60).body)

    def observe(self) -> Observation:
        return _observation(self._wire.request("observe", {}).body)

    def act(self, action: np.ndarray, mode: str = "ee") -> None:
        self._wire.request("act", {"action": np.asarray(action, dtype=np.float64), "mode": mode})

    def hold(self) -> None:
        self._wire.request("hold", {})

    def close(self) -> None:
        self._wire.close()


def _observation_body(obs: Observation) -> dict[str, Any]:
    return {"images": obs.images, "state": obs.state, "timestamp": obs.timestamp, "env_state": obs.env_state,
            "task_progress": obs.task_progress}


def _observation(body: dict[str, Any]) -> Observation:
    # Received arrays are read-only views of the message; the loop and recorder may keep them.
    return Observation(images=dict(body["images"]), state=np.asarray(body["state"], dtype=np.float32),
                       timestamp=float(body["timestamp"]), env_state=body.get("env_state"),
                       task_progress=body.get("task_progress"))
