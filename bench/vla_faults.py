"""Benchmark: kill the VLA server with SIGKILL during episodes and watch the robot (issue 22's figure).

The app's set-up, real time: a threaded `CoachingSession` (the wall-clock loop at 20 Hz) on the sim
robot, the sim skill policy in a supervised child process, a client timeout of `timeout_s`. Each
round starts an episode, sends a subtask, lets the robot move, kills the VLA process at a random
moment, then presses Try again every half second until the robot acts again. Per round:

- `hold_s`: kill -> first tick that holds (no action) while the subtask is active; must be at most
  the request timeout plus one control tick (`holds_in_time` counts the rounds where it is);
- `error_s`: kill -> the VLA light (the session's `vla_error`) is red, same bound;
- `request_failed_s`: kill -> the chunker reports a failed request: the request sent after the kill
  (when the queued actions run low) plus the timeout;
- `reconnect_s`: kill -> first action after the restart (the supervisor's restart included);
- `max_tick_gap_s`: the longest gap between ticks during the outage: the loop never waits on the VLA;
- `hung`: rounds where the robot did not act again within `hang_after_s`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time

import numpy as np

from coaching.robot import Robot


class _TimedRobot(Robot):
    """The real robot, with the wall time of every act and hold written down (the bench's probe)."""

    def __init__(self, robot: Robot):
        self._robot = robot
        self.events: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def describe(self):
        return self._robot.describe()

    def reset(self, task_family, seed):
        return self._robot.reset(task_family, seed)

    def observe(self):
        return self._robot.observe()

    def act(self, action, mode="ee"):
        self._robot.act(action, mode)
        self._note("act")

    def hold(self):
        self._robot.hold()
        self._note("hold")

    def close(self):
        self._robot.close()

    def _note(self, what: str) -> None:
        with self._lock:
            self.events.append((time.time(), what))
            del self.events[:-4000]

    def since(self, t: float) -> list[tuple[float, str]]:
        with self._lock:
            return [e for e in self.events if e[0] >= t]


def run(kills: int = 100, seed: int = 0, timeout_s: float = 1.0, hang_after_s: float = 60.0) -> dict:
    """`kills` rounds (see the module docstring); seconds throughout."""
    from app import embedded
    from coaching.session import CoachingSession, EpisodeSettings
    from coaching.vla import connect_vla

    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    rounds = []
    with connect_vla(None, embedded.SIM_VLA_FACTORY, {"noise": 0.0, "control_hz": embedded.APP_CONTROL_HZ},
                     timeout_s=timeout_s) as vla:
        robot = _TimedRobot(embedded.sim_robot(embedded.APP_CONTROL_HZ))
        tick_s = 1.0 / robot.describe().control_hz
        session = CoachingSession(robot, vla, idle_reset=("sort_blocks", 0)).start()
        try:
            for k in tqdm(range(kills), desc="killing the VLA", unit="kill"):
                session.start_episode(EpisodeSettings(task="Sort the blocks.", task_family="sort_blocks",
                                                      seed=seed + k), user="bench")
                rounds.append(_round(session, robot, vla.supervisor, float(rng.uniform(0.3, 1.5)), tick_s,
                                     hang_after_s))
                session.end_episode("aborted", user="bench")
        finally:
            session.close()
    bound = timeout_s + tick_s
    done = [r for r in rounds if r["reconnect_s"] is not None]
    return {
        "kills": kills, "timeout_s": timeout_s, "tick_s": tick_s,
        "holds_in_time": sum(r["hold_s"] is not None and r["hold_s"] <= bound for r in rounds),
        "errors_in_time": sum(r["error_s"] is not None and r["error_s"] <= bound for r in rounds),
        "hold_s_max": _max(r["hold_s"] for r in rounds),
        "error_s_max": _max(r["error_s"] for r in rounds),
        "request_failed_s_max": _max(r["failed_s"] for r in rounds),
        "reconnect_s_mean": round(float(np.mean([r["reconnect_s"] for r in done])), 3) if done else None,
        "reconnect_s_max": _max(r["reconnect_s"] for r in done),
        "max_tick_gap_s": _max(r["max_tick_gap_s"] for r in rounds),
        "hung": sum(r["reconnect_s"] is None for r in rounds),
    }


def _max(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(max(values), 3) if values else None


def _round(session, robot: _TimedRobot, supervisor, moving_s: float, tick_s: float, hang_after_s: float) -> dict:
    session.send_subtask("pick up the red block", user="bench")
    _wait(lambda: any(w == "act" for _, w in robot.since(time.time() - 0.5)), 60)
    time.sleep(moving_s)
    restarts = supervisor.restarts
    killed = time.time()
    os.kill(supervisor.process.pid, signal.SIGKILL)
    error_s = None
    end = killed + hang_after_s
    last_press = killed
    reconnect_s = None
    failed_s = None
    while time.time() < end:
        now = time.time()
        if error_s is None and session.status()["vla_error"] is not None:
            error_s = now - killed
        if failed_s is None and session.loop.stats()["vla_error"] is not None:
            failed_s = now - killed
        if supervisor.restarts > restarts and error_s is not None:
            acts = [t for t, w in robot.since(last_press) if w == "act"]
            if acts and last_press > killed:
                reconnect_s = acts[0] - killed
                break
            if time.time() - last_press > 0.5:
                session.try_again(user="bench")  # the coach presses Try again
                last_press = time.time()
        time.sleep(0.01)
    events = robot.since(killed)
    holds = [t for t, w in events if w == "hold"]
    ticks = [killed] + [t for t, _ in events if reconnect_s is None or t <= killed + reconnect_s]
    return {"hold_s": holds[0] - killed if holds else None, "error_s": error_s, "failed_s": failed_s,
            "reconnect_s": reconnect_s,
            "max_tick_gap_s": float(np.max(np.diff(ticks))) if len(ticks) > 1 else None, "tick_s": tick_s}


def _wait(predicate, timeout_s: float) -> None:
    end = time.time() + timeout_s
    while not predicate():
        if time.time() > end:
            raise RuntimeError("the robot did not start moving; check the VLA")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    print(json.dumps(run(**vars(parser.parse_args()))))


if __name__ == "__main__":
    main()
