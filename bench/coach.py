"""Benchmark: the scripted expert coach over the served sim skill policy, 20 seeds on every task family.

Prints `coachlab coach --json`'s figures plus wall-clock seconds per simulated second.
"""

from __future__ import annotations

import json
import time


def run(episodes: int = 20, seed: int = 0) -> dict:
    from app import embedded
    from coaching.episode import summarise
    from coaching.session import CoachingSession

    with embedded.vla(seed=seed) as vla:
        session = CoachingSession(embedded.sim_robot(), vla, stepped=True).start()
        try:
            start = time.perf_counter()
            reports = embedded.scripted_coaching(session, list(embedded.task_families()), episodes, seed, "expert")
            wall = time.perf_counter() - start
        finally:
            session.close()
    sim_s = sum(e.duration_s for eps in reports.values() for e in eps)
    return {"tasks": {t: summarise(eps) for t, eps in reports.items()}, "profile": "expert", "noise": 1.0,
            "realtime_factor": round(sim_s / wall, 2)}


def main() -> None:
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
