"""Sim lookahead: the embedded default subgoal generator.

It owns previewing a subtask by running it: the sim's current state (the privileged
`env_state["sim_state"]` of an observation) is restored into a private copy of the MuJoCo robot,
the same low-level policy drives that copy until the subtask looks finished, and the copy's
cameras are rendered. The episode's own robot is never touched. Only a simulator can do this;
a real robot needs a learned subgoal model (`distill/`).
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from coaching.prompt import vla_prompt
from coaching.robot import Observation
from policy_client import ChunkingConfig
from policy_client.chunk_check import check_chunk
from sim.mujoco_robot import MujocoRobot, SimRobotConfig

NEEDS_SIM_STATE = ("Sim lookahead needs the sim's state; a real robot needs a learned subgoal model "
                   "(--subgoals learned:DIR).")
STILL_M = 0.001  # per control step: ee moves less than this (and the jaw too) -> the gripper is still


class _Policy(Protocol):
    def infer(self, observation: dict[str, Any], prompt: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class SubgoalResult:
    images: dict[str, np.ndarray]  # camera -> HxWx3 uint8 at the end of the preview
    steps: int  # control steps the preview ran
    info: dict[str, Any] = field(default_factory=dict)  # the policy's last info (how it read the text)
    refused: str | None = None  # the policy's refusal sentence, if it refused
    end_state: dict[str, Any] | None = None  # the copy's env_state at the end, without `sim_state`


class SimLookahead:
    """`generate(observation, subtask) -> SubgoalResult` by running the subtask in a copy of the sim.

    One instance must be used from one thread: its private robot's EGL rendering context belongs
    to the thread that first calls `generate` (it is built lazily there, not in `__init__`).
    `close` too must run on that thread. `policy` may be shared with the control loop only if it
    is thread-safe (the ZMQ client is: it serialises requests).
    """

    def __init__(self, policy: _Policy, robot_config: SimRobotConfig | None = None, max_steps: int = 150,
                 settle_steps: int = 10, replan_after: int = ChunkingConfig().replan_after):
        self.policy = policy
        self.robot_config = robot_config  # None: the cameras and image size of the observations given
        self.max_steps = max_steps
        self.settle_steps = settle_steps
        self.replan_after = replan_after
        self._robot: MujocoRobot | None = None
        self._thread: int | None = None
        # Every preview is a fresh try: the skill policy keys its per-instruction memory and noise by
        # (episode, segment, text), and a long-lived policy server outlives this object, so the
        # counter starts at a random base instead of 0 (a restarted app must not resume old tries).
        # The prompt is marked as a probe: nothing it returns is executed on the robot.
        self._segments = itertools.count(int.from_bytes(os.urandom(4), "little"))

    def generate(self, observation: Observation, subtask: str, task: str = "", control_mode: str = "ee") -> SubgoalResult:
        sim_state = (observation.env_state or {}).get("sim_state")
        if sim_state is None:
            raise ValueError(NEEDS_SIM_STATE)
        robot = self._private_robot(observation)
        obs = robot.restore(sim_state)
        prompt = vla_prompt(task, subtask, control_mode, segment=next(self._segments), probe=True)
        chunk: list[np.ndarray] = []
        info: dict[str, Any] = {}
        last = robot.proprio()
        moved, still, steps = False, 0, 0
        while steps < self.max_steps:
            if steps % self.replan_after == 0 or not chunk:
                obs = robot.observe() if steps else obs
                reply = self.policy.infer(obs.to_dict(), prompt)
                info = dict(reply.get("info") or {})
                if info.get("refused"):
                    if moved:
                        # It took the subtask on and now has nothing more to do ("I'm not holding anything"
                        # once "put it on the pad" let go): done, as the control loop reads it
                        # (`coaching/activity.py`), not a refusal (the preview of every "put it ..." was one).
                        info.pop("refused")
                        info.pop("reason", None)
                        break
                    refusal = str(info.get("reason") or "The low-level policy refused this subtask.")
                    # nothing ran yet: the end state is the observation itself, pixel for pixel
                    images = _copy(observation.images) if steps == 0 else robot.observe().images
                    return SubgoalResult(images, steps, info, refusal, _without_sim_state(robot.env_state()))
                names = robot.describe().action_names.get(control_mode)
                chunk = list(check_chunk(reply.get("actions"), names, control_mode)[: self.replan_after])
            if chunk:
                robot.act(chunk.pop(0), control_mode)
            else:
                robot.hold()  # an empty chunk means hold, as in the control loop
            steps += 1
            now = robot.proprio()
            # ee position (state[6:9]) and jaw opening (state[5]); joint angles may drift in IK null space
            if max(np.abs(now[6:9] - last[6:9]).max(), abs(now[5] - last[5])) < STILL_M:
                still += 1
            else:
                moved, still = True, 0
            last = now
            if moved and still >= self.settle_steps:
                break  # moved, then came to rest: the policy holds because the subtask is done (or stuck)
            if not moved and steps >= 3 * self.settle_steps:
                break  # never moved: nothing to do for this subtask here
        end = robot.observe()
        return SubgoalResult(end.images, steps, info, None, _without_sim_state(end.env_state))

    def close(self) -> None:
        """Release the private robot; on the thread that used it (EGL will not let another thread)."""
        if self._robot is not None and self._thread != threading.get_ident():
            raise RuntimeError("Close a SimLookahead on the thread that used it, e.g. submit close to the "
                               "same executor as generate.")
        if self._robot is not None:
            self._robot.close()
            self._robot = None

    def _private_robot(self, observation: Observation) -> MujocoRobot:
        if self._robot is None:
            config = self.robot_config
            if config is None:  # render what the caller sees: same cameras, same size
                first = next(iter(observation.images.values()))
                config = SimRobotConfig(cameras=tuple(observation.images), image_size=tuple(first.shape[:2]))
            self._robot, self._thread = MujocoRobot(config), threading.get_ident()
        elif self._thread != threading.get_ident():
            raise RuntimeError("A SimLookahead renders through the thread that first used it; "
                               "give every thread its own SimLookahead.")
        return self._robot


def _without_sim_state(env: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in env.items() if k != "sim_state"}


def _copy(images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in images.items()}
