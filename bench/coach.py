"""Benchmark: the scripted expert coach over the served sim skill policy, 20 seeds on every task family.

Prints `coachlab coach --json`'s figures plus wall-clock seconds per simulated second.
"""

from __future__ import annotations

import json
import time


def run(episodes: int = 20, seed: int = 0) -> dict:
    from coaching.low_level import low_level_policy
    from coaching.scripted_coaching import CoachingRun, run as run_coaching, summarise
    from sim.mujoco_robot import MujocoRobot
    from sim.tasks import FAMILIES

    with low_level_policy(sim_options={"seed": seed}) as policy:
        start = time.perf_counter()
        reports = run_coaching(MujocoRobot(), policy, CoachingRun(list(FAMILIES), episodes, seed, "expert"))
        wall = time.perf_counter() - start
    sim_s = sum(e.duration_s for eps in reports.values() for e in eps)
    return {**summarise(reports), "profile": "expert", "noise": 1.0,
            "realtime_factor": round(sim_s / wall, 2)}


def main() -> None:
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
