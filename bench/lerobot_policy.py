"""Benchmark: a LeRobot policy driving a coachlab episode through the shipped adapter
(`policy_client/lerobot_policy.py`), end to end.

In LeRobot's own environment (bench/lerobot_env.py): a small ACT policy, randomly initialised for
the sim robot's cameras, state and ee actions, is saved as LeRobot's training saves one (weights,
config, pre- and post-processor pipelines with normalisation stats), then loaded and served by the
adapter over coachlab's ZMQ wire. The coachlab app on the embedded sim points its VLA at that
address; a coach's subtask runs for a few seconds. Figures: the policy's size and load time, the
round trip per chunk, the loop's rate, steps logged, and whether every logged action was the
policy's (finite, in the robot's bounds) and moved the arm.

The normalisation stats put the untrained policy's outputs near the middle of the sim's ee
workspace (mean: the workspace centre, std: 2 cm), so its random actions are safe ones; what the
bench checks is the plumbing (processors, chunk shape, units, the wire), not skill.
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 20


def _spec() -> dict[str, Any]:
    """The sim robot's features as the ACT policy is built for them, with its normalisation stats."""
    from sim.mujoco_robot import ACTION_BOUNDS, EE_ACTION, STATE_NAMES, SimRobotConfig

    low, high = (np.asarray(b, dtype=float) for b in ACTION_BOUNDS["ee"])
    mid = (low + high) / 2
    config = SimRobotConfig()
    return {"cameras": list(config.cameras), "image_size": list(config.image_size), "state_dim": len(STATE_NAMES),
            "action_dim": len(EE_ACTION), "chunk_size": CHUNK,
            "stats": {"observation.state": {"mean": [0.0] * len(STATE_NAMES), "std": [1.0] * len(STATE_NAMES)},
                      "action": {"mean": mid.tolist(), "std": [0.02] * len(EE_ACTION)}}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(py: Path, policy_dir: Path, port: int) -> subprocess.Popen:
    """The adapter in LeRobot's environment; returns once it says it serves (RuntimeError if it does not)."""
    proc = subprocess.Popen([str(py), str(ROOT / "bench" / "lerobot_serve.py"), str(ROOT), str(policy_dir),
                             "--port", str(port)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("serving LeRobot"):
            return proc
    proc.wait()
    raise RuntimeError(f"The LeRobot policy adapter did not start: {''.join(lines[-3:]).strip()}")


@contextlib.contextmanager
def served_act(tmp: Path) -> Iterator[dict[str, Any]]:
    """Build the random ACT policy in LeRobot's environment and serve it with the adapter; yields
    {"address", "policy_dir", "parameters", "load_s"} while it serves. RuntimeError (one sentence) if either fails."""
    from bench.lerobot_env import ensure

    py = ensure()
    spec_path, policy_dir = tmp / "spec.json", tmp / "act"
    spec_path.write_text(json.dumps(_spec()))
    r = subprocess.run([str(py), str(ROOT / "bench" / "lerobot_make_act.py"), str(spec_path), str(policy_dir)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"Building the ACT policy failed: {' '.join(r.stderr.strip().splitlines()[-1:])}")
    port, start = _free_port(), time.perf_counter()
    server = _serve(py, policy_dir, port)
    try:
        yield {"address": f"tcp://127.0.0.1:{port}", "policy_dir": policy_dir, "parameters": json.loads(r.stdout.strip().splitlines()[-1])["parameters"],
               "load_s": round(time.perf_counter() - start, 1)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def drive(address: str, db: Path, seconds: float = 8.0) -> dict[str, Any]:
    """The app on the embedded sim with its VLA at `address`: one subtask for `seconds`, then what was logged."""
    from app.server import AppConfig, CoachingApp
    from coaching.settings import EpisodeSettings
    from sim.mujoco_robot import ACTION_BOUNDS, STATE_NAMES
    from storage import load_episode

    app = CoachingApp(AppConfig(port=0, db=str(db), vla=address)).start()
    try:
        session = app.session
        episode_id = session.start_episode(EpisodeSettings(task="Bus the table.", task_family="bussing", seed=0),
                                           user="bench")
        seg = session.send_subtask("pick up the white cup", user="bench")
        rtts, rates = [], []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.5)
            status = session.status()
            rates.append(status["loop_hz"])
            if status.get("vla_rtt_ms"):
                rtts.append(status["vla_rtt_ms"])
        errors = list(session.status()["errors"])
        session.end_episode("failure", user="bench")
        steps = load_episode(session.recorder.db, episode_id).steps()
    finally:
        app.close()
    in_segment = steps.segment_id == seg.id
    held = ~np.isfinite(steps.action).all(axis=1)  # NaN rows: the robot held still (before the first chunk)
    acted = in_segment & ~held  # the steps the policy drove
    x = STATE_NAMES.index("ee_x")
    actions, ee = steps.action[acted], steps.state[in_segment][:, x:x + 3]  # ee_x, ee_y, ee_z
    low, high = (np.asarray(b) for b in ACTION_BOUNDS["ee"])
    moved = float(np.linalg.norm(ee[-1] - ee[0])) if len(ee) > 1 else 0.0
    in_bounds = bool(len(actions) and ((actions >= low) & (actions <= high)).all())
    return {"seconds_driven": seconds, "steps_logged": int(len(actions)), "steps_held": int((in_segment & held).sum()),
            "vla_rtt_ms_median": round(statistics.median(rtts), 1) if rtts else None,
            "loop_hz_median": round(statistics.median(rates), 1) if rates else None, "ee_moved_m": round(moved, 3),
            "action_min": np.round(actions.min(axis=0), 3).tolist() if len(actions) else None,
            "action_max": np.round(actions.max(axis=0), 3).tolist() if len(actions) else None,
            "actions_in_bounds": in_bounds, "errors": errors, "ok": in_bounds and moved > 0.01 and not errors}


def run(seconds: float = 8.0) -> dict[str, Any]:
    from bench.lerobot_env import ENV

    with tempfile.TemporaryDirectory(prefix="coachlab-bench-lerobot-policy-") as tmp:
        with served_act(Path(tmp)) as served:
            driven = drive(served["address"], Path(tmp) / "coach.db", seconds)
    return {"lerobot_version": ENV.name.split("-", 1)[1], "policy": "act (random init)",
            "parameters": served["parameters"], "chunk_length": CHUNK, "load_s": served["load_s"], **driven}


def main() -> None:
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
