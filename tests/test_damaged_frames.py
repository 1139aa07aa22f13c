"""A damaged stored frame is skipped, counted and named by every reader of stored frames (issue 22 fault 1).

Four real coached episodes in a real SQLite file; one JPEG (episode 2, camera base, step 10) cut to
200 bytes, as a torn write or a bad disk leaves it. Before the fix `coachlab distill` ended in a
traceback "The stored frame is not a readable JPEG or PNG image" naming no episode or step.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cut_frame(path: Path, episode: int, camera: str, step: int) -> None:
    with sqlite3.connect(path) as con:
        (data,) = con.execute("SELECT data FROM frames WHERE episode_id=? AND camera=? AND step_index=?",
                              (episode, camera, step)).fetchone()
        con.execute("UPDATE frames SET data=? WHERE episode_id=? AND camera=? AND step_index=?",
                    (data[:200], episode, camera, step))
    con.close()


@pytest.fixture(scope="module")
def damaged_db(four_coached_episodes, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("damaged") / "coach.db"
    shutil.copy(four_coached_episodes, path)
    _cut_frame(path, 2, "base", 10)
    return path


def test_a_damaged_frame_names_episode_camera_and_step(damaged_db):
    from storage import DamagedFrame, load_episode, open_database

    with open_database(str(damaged_db)) as db:
        record = load_episode(db, 2)
        with pytest.raises(DamagedFrame, match="episode 2, camera 'base', step 10 is damaged") as caught:
            record.frame("base", 10)
        assert (caught.value.episode_id, caught.value.camera, caught.value.step_index) == (2, "base", 10)
        assert record.frame("base", 11).shape == (224, 224, 3)  # its neighbours still read
        assert record.frame("wrist", 10).shape == (224, 224, 3)
        assert [d.to_dict() for d in record.damaged] == [{"episode": 2, "camera": "base", "step": 10}]


def test_distill_skips_counts_and_names_the_damaged_frame(damaged_db, tmp_path):
    r = subprocess.run([sys.executable, "-m", "app.cli", "distill", "--db", str(damaged_db), "--out",
                        str(tmp_path / "policy"), "--epochs", "1", "--no-progress", "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    metrics = json.loads(r.stdout)
    assert metrics["damaged_frames"] == [{"episode": 2, "camera": "base", "step": 10}]
    assert metrics["skipped"]["damaged frame"] == 1
    assert "episode 2, camera 'base', step 10 is damaged" in r.stderr
    # a second run reads the detections from the cache and still says it
    again = subprocess.run([sys.executable, "-m", "app.cli", "distill", "--db", str(damaged_db), "--out",
                            str(tmp_path / "policy"), "--epochs", "1", "--no-progress", "--json"],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["damaged_frames"] == [{"episode": 2, "camera": "base", "step": 10}]


def test_subgoal_pairs_skip_and_name_the_damaged_frame(damaged_db, tmp_path):
    from distill.subgoal_data import SubgoalDataConfig, build_pairs
    from storage import load_episode, open_database

    copy = tmp_path / "copy.db"
    shutil.copy(damaged_db, copy)
    with open_database(str(copy)) as db:
        first = min(s.first_step for s in load_episode(db, 3).segments if s.first_step is not None)
    _cut_frame(copy, 3, "wrist", first)  # a preview moment: always a pair's current frame
    with open_database(str(copy)) as db:
        train, val, info = build_pairs(db, SubgoalDataConfig(), progress=False)
    assert {"episode": 3, "camera": "wrist", "step": first} in info.damaged_frames
    assert info.skipped["damaged frame"] == len(info.damaged_frames)
    assert info.skipped["damaged_frame_pairs"] >= 1
    assert train and all(p.current["wrist"].shape[2] == 3 for p in train + val)
