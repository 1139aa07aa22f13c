"""Benchmark: SIGKILL the recording process at random points of coached episodes (issue 22's figure).

Each run starts a child process that coaches one episode of the sim (the scripted coach, the sim
robot, the sim skill policy over the wire from one VLA server shared by all runs) into one SQLite
file, printing after every step the wall time and how many steps the recorder has committed. The
parent kills the child with SIGKILL after a random number of steps, then opens the database as
the next program would (recovery marks the episode `interrupted`) and checks it:

- `episodes_kept`: the killed episode is there, `interrupted` (or finished, if it ended first);
- `committed_steps_lost`: steps the child saw committed that are not in the database (must be 0);
- `tail_s_max`: the most wall time of recording lost at the end (the kill's time minus the time the
  last kept step was recorded), at most about one commit period (0.25 s) plus a write;
- `db_opens_clean`: opens after a kill that succeed with SQLite's integrity check `ok`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FAMILIES = ("sort_blocks", "bussing", "drawer")
REPO = Path(__file__).resolve().parents[1]


def run(runs: int = 100, seed: int = 0, max_kill_step: int = 200) -> dict:
    """`runs` killed episodes (seeds `seed..`); see the module docstring for the figures."""
    from policy_client.local_server import LocalPolicyServer
    from app.embedded import SIM_VLA_FACTORY
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    figures = {"runs": runs, "episodes_kept": 0, "committed_steps_lost": 0, "tail_s_max": 0.0,
               "tail_s_mean": 0.0, "db_opens_clean": 0, "finished_before_kill": 0}
    tails = []
    with tempfile.TemporaryDirectory() as tmp, LocalPolicyServer(SIM_VLA_FACTORY, {"noise": 1.0}) as vla:
        url = f"sqlite:///{tmp}/crash.db"
        for k in tqdm(range(runs), desc="killing coaching processes", unit="run"):
            kill_at = int(rng.integers(5, max_kill_step))
            result = _one_run(url, vla.zmq_address, FAMILIES[k % len(FAMILIES)], seed + k, kill_at)
            figures["episodes_kept"] += result["kept"]
            figures["committed_steps_lost"] += result["lost"]
            figures["db_opens_clean"] += result["clean"]
            figures["finished_before_kill"] += result["finished"]
            tails.append(result["tail_s"])
    figures["tail_s_max"] = round(max(tails), 3) if tails else 0.0
    figures["tail_s_mean"] = round(float(np.mean(tails)), 3) if tails else 0.0
    return figures


def _one_run(url: str, vla_address: str, family: str, seed: int, kill_at: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "bench.crash", "--child", url, vla_address, family, str(seed)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    episode_id, walls, committed, finished = None, {}, 0, False
    for line in proc.stdout:
        word, *rest = line.split()
        if word == "episode":
            episode_id = int(rest[0])
        elif word == "step":
            index, wall, written = int(rest[0]), float(rest[1]), int(rest[2])
            walls[index], committed = wall, max(committed, written)
            if index >= kill_at:
                break
        elif word == "done":
            finished = True
            break
    killed_wall = time.time()
    os.kill(proc.pid, signal.SIGKILL)
    rest, err = proc.communicate()
    for line in rest.splitlines():  # steps printed before the kill landed
        word, *fields = line.split()
        if word == "step":
            walls[int(fields[0])], committed = float(fields[1]), max(committed, int(fields[2]))
    if episode_id is None:
        raise RuntimeError(f"the coaching child failed before its episode started: {err[-2000:]}")
    return _check(url, episode_id, walls, committed, killed_wall, finished)


def _check(url: str, episode_id: int, walls: dict[int, float], committed: int, killed_wall: float,
           finished: bool) -> dict:
    import sqlalchemy as sa

    from storage import load_episode, open_database

    result = {"kept": 0, "lost": 0, "clean": 0, "tail_s": 0.0, "finished": int(finished)}
    try:
        db = open_database(url)  # what the next program does: recovery included
    except Exception as e:  # counted, not raised: the figure says how often this happens
        print(f"open failed after a kill: {e}", file=sys.stderr)
        return result
    try:
        with db.engine.connect() as c:
            result["clean"] = int(c.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok")
        ep = load_episode(db, episode_id)
        kept = ep.summary.num_steps
        result["kept"] = int(ep.summary.status in ("interrupted", "success", "failure", "aborted")
                             and kept == len(ep.steps()))
        result["lost"] = max(0, committed - kept)
        last_kept_wall = walls.get(kept - 1, min(walls.values(), default=killed_wall))
        result["tail_s"] = 0.0 if finished else max(0.0, killed_wall - last_kept_wall)
    finally:
        db.close()
    return result


def _child(url: str, vla_address: str, family: str, seed: int) -> None:
    """Coach one episode into `url`, printing `step index wall committed` after every recorded step."""
    from app import embedded
    from coaching.session import CoachingSession
    from storage import Recorder, open_database

    class PrintingRecorder(Recorder):
        def start_episode(self, *args, **kwargs):
            episode_id = super().start_episode(*args, **kwargs)
            self._index = 0
            print("episode", episode_id, flush=True)
            return episode_id

        def record_step(self, *args, **kwargs):
            super().record_step(*args, **kwargs)
            print("step", self._index, repr(time.time()), self.stats.written, flush=True)
            self._index += 1

    db = open_database(url)
    recorder = PrintingRecorder(db)
    with embedded.vla(vla_address) as vla:
        session = CoachingSession(embedded.sim_robot(), vla, recorder, stepped=True).start()
        embedded.scripted_coaching(session, [family], 1, seed, progress=False)
        print("done", flush=True)
        time.sleep(60)  # wait for the kill, as a recording program does not choose when it dies


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    print(json.dumps(run(**vars(parser.parse_args()))))


if __name__ == "__main__":
    main()
