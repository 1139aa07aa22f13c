"""Benchmark: `coachlab export --format lerobot` of 20 coached episodes, read back by LeRobot's loader.

Coaches 20 sort_blocks episodes (expert, no noise, seeds 0-19) into a fresh SQLite file with the real
sim and the sim skill policy over the wire, exports them (language form `index`, the one LeRobot 0.4
reads back as text), loads the export with LeRobot's own `LeRobotDataset` (bench/lerobot_env.py)
and compares every frame with the database. Reported: episodes exported per second, MB of export per
coached minute, and `lerobot_load_ok` with equality counts (frames, actions, states, subtasks).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FRAME_TOLERANCE = 6.0  # mean absolute difference of 4x4 block means (0-255) a video frame may have


def _blocks(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[0] // 4 * 4, img.shape[1] // 4 * 4
    return img[:h, :w].astype(np.float64).reshape(h // 4, 4, w // 4, 4, 3).mean(axis=(1, 3)).round()


def compare(db: Any, read: dict[str, Any], dropped: set[tuple[int, str, int]] = frozenset()) -> dict[str, Any]:
    """Equality counts between what LeRobot's loader `read` (bench.lerobot_env.load) and the database.

    For each frame: the step it should show is found again from the database's steps (the export's
    resampling rule), then its action (non-held frames), state, task, subtask (when the export has
    text subtasks) and each camera image (the stored JPEG vs the decoded video frame, 4x4 block means
    within FRAME_TOLERANCE) are compared. `dropped`: (episode id, camera, step) of damaged frames.
    """
    from storage import load_episode
    from storage.export.timeline import resample

    meta = read["meta"]
    fps = int(meta["fps"])
    ep_ids = {int(e["episode_index"]): int(e["coachlab/episode_id"]) for e in meta["episodes"]}
    counts = {"frames": 0, "frames_equal": 0, "actions_equal": 0, "actions_compared": 0, "states_equal": 0,
              "tasks_equal": 0, "subtasks_equal": 0, "subtasks_compared": 0, "frame_mad_max": 0.0}
    cams = [k.removeprefix("observation.images.") for k in meta["camera_keys"]]
    episode_index = np.asarray(read["episode_index"])
    for e, eid in ep_ids.items():
        rows = np.flatnonzero(episode_index == e)
        record = load_episode(db, eid)
        st = record.steps()
        frames = resample(st.t, st.state, st.action, st.segment_id, st.index, fps)
        gone = np.array([any((eid, c, int(s)) in dropped for c in cams) for s in frames.step_index], dtype=bool)
        frames = frames.without(gone)
        texts = {g.id: g.text for g in record.segments}
        for k, row in enumerate(rows):
            step = int(frames.step_index[k])
            counts["frames"] += 1
            i = int(np.flatnonzero(st.index == step)[0])
            counts["states_equal"] += bool(np.array_equal(np.asarray(read["observation.state"][row]),
                                                         st.state[i].astype(np.float32)))
            if np.isfinite(st.action[i]).all():
                counts["actions_compared"] += 1
                counts["actions_equal"] += bool(np.array_equal(np.asarray(read["action"][row]),
                                                              st.action[i].astype(np.float32)))
            counts["tasks_equal"] += read["task"][row] == record.summary.task
            if "subtask" in read:
                counts["subtasks_compared"] += 1
                counts["subtasks_equal"] += read["subtask"][row] == texts.get(int(st.segment_id[i]), "")
            mads = [float(np.abs(_blocks(record.frame(c, step)) - read[f"observation.images.{c}"][row]).mean())
                    for c in cams]
            counts["frame_mad_max"] = round(max(counts["frame_mad_max"], *mads), 2)
            counts["frames_equal"] += all(m <= FRAME_TOLERANCE for m in mads)
    counts["frames_read"] = int(len(episode_index))
    return counts


def run(episodes: int = 20, seed: int = 0) -> dict[str, Any]:
    from bench.lerobot_env import load
    from storage import open_database
    from storage.export import ExportConfig, export_lerobot

    with tempfile.TemporaryDirectory(prefix="coachlab-bench-export-") as tmp:
        db_path = Path(tmp) / "coach.db"
        r = subprocess.run([sys.executable, "-m", "app.cli", "coach", "--task", "sort_blocks", "--episodes",
                            str(episodes), "--seed", str(seed), "--noise", "0", "--db", str(db_path), "--json"],
                           cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"coaching the episodes failed: {r.stderr.strip()[-500:]}")
        with open_database(str(db_path)) as db:
            report = export_lerobot(db, Path(tmp) / "export", ExportConfig(language="index"), progress=True)
            coached_min = sum(e.duration_s or 0.0 for e in __import__("storage").list_episodes(db, limit=None)) / 60
            start = time.perf_counter()
            read = load(Path(report.out))
            load_s = time.perf_counter() - start
            counts = compare(db, read)
    ok = (counts["frames_read"] == report.frames == counts["frames"] and counts["frames_equal"] == counts["frames"]
          and counts["actions_equal"] == counts["actions_compared"] and counts["states_equal"] == counts["frames"]
          and counts["subtasks_equal"] == counts["subtasks_compared"] == counts["frames"])
    sim_min = report.frames / report.fps / 60  # the robot's own time: what a coach spent coaching
    return {"episodes": report.episodes, "frames": report.frames, "fps": report.fps,
            "export_s": report.seconds, "episodes_per_s": round(report.episodes / report.seconds, 2),
            "export_mb": report.size_mb, "coached_minutes": round(sim_min, 2),
            "mb_per_coached_minute": round(report.size_mb / sim_min, 2),
            "wall_minutes_recorded": round(coached_min, 2), "lerobot_load_s": round(load_s, 1),
            "lerobot_load_ok": bool(ok), "equality": counts}


def main() -> None:
    print(json.dumps(run(), indent=2))


if __name__ == "__main__":
    main()
