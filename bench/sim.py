"""Benchmark: control steps per second of the sim robot with every camera rendered at 224x224.

Run on one core (the process pins itself to CPU 0 where it can) with the default two cameras;
each step is physics (one 10 Hz control period) plus rendering every camera plus env_state.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np


def run(steps: int = 300) -> dict:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    os.environ.setdefault("LP_NUM_THREADS", "1")  # Mesa's llvmpipe: render on this one core too
    from sim.mujoco_robot import MujocoRobot, SimRobotConfig

    robot = MujocoRobot(SimRobotConfig(cameras=("base", "wrist"), image_size=(224, 224)))
    obs = robot.reset("bussing", 0)
    rng = np.random.default_rng(0)
    x, y, z, yaw = obs.state[6], obs.state[7], obs.state[8], obs.state[9]
    start = time.perf_counter()
    for k in range(steps):  # a slow random walk of the gripper so the arm really moves
        target = np.array([x + 0.1 * np.sin(k / 20), y + 0.1 * np.cos(k / 25), z - 0.05, yaw, 0.0, rng.random()])
        robot.act(target, "ee")
        obs = robot.observe()
    elapsed = time.perf_counter() - start
    return {"steps_per_s": round(steps / elapsed, 1), "cameras": list(obs.images),
            "image_size": list(obs.images["base"].shape[:2]), "physics_hz": 500, "control_hz": 10}


def main() -> None:
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
