"""`coachlab export --format lerobot` (issue 23 item 1): real coached episodes in a real SQLite file,
exported, and read back by LeRobot's own `LeRobotDataset` (lerobot 0.4.4 in its cached environment,
bench/lerobot_env.py) and compared frame by frame with the database.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def _all_equal(counts: dict) -> bool:
    return (counts["frames"] == counts["frames_read"] == counts["frames_equal"] == counts["states_equal"]
            == counts["tasks_equal"] and counts["actions_equal"] == counts["actions_compared"] > 0
            and counts["subtasks_equal"] == counts["subtasks_compared"])


@pytest.fixture(scope="module")
def held_and_corrected(tmp_path_factory, served_policy) -> tuple[Path, int]:
    """A SQLite file with one coached episode recorded on the stepped loop: steps before the first
    subtask and while paused (the robot held: no action), then a correction."""
    from app import embedded
    from coaching.session import CoachingSession, EpisodeSettings
    from storage import Recorder, open_database

    path = tmp_path_factory.mktemp("held") / "coach.db"
    task = embedded.task_families()["sort_blocks"]
    with open_database(str(path)) as db, Recorder(db) as recorder:
        session = CoachingSession(embedded.sim_robot(), served_policy, recorder, stepped=True).start()
        try:
            episode = session.start_episode(EpisodeSettings(task, "sort_blocks", 3, quality=4), "ana")
            for _ in range(4):
                session.loop.step()  # no subtask yet: the robot holds
            session.send_subtask("lift the red block", "ana")
            for _ in range(12):
                session.loop.step()
            session.pause("ana")
            for _ in range(5):
                session.loop.step()
            session.resume("ana")
            session.send_subtask("pick up the red block", "ana", source="correction")
            for _ in range(12):
                session.loop.step()
            session.end_episode("failure", "ana")
        finally:
            session.close()
        recorder.flush()
    return path, episode


def test_an_export_reads_back_in_lerobot_equal_to_the_database(four_coached_episodes, tmp_path):
    from bench.export import compare
    from bench.lerobot_env import load
    from storage import list_episodes, open_database

    out = tmp_path / "ds"
    r = _cli("export", "--db", str(four_coached_episodes), "--format", "lerobot", "--out", str(out),
             "--language", "index", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["episodes"] == 4 and report["fps"] == 10 and report["control_mode"] == "ee"
    assert "exporting" in r.stderr  # the progress bar
    read = load(out)
    assert read["meta"]["total_episodes"] == 4 and read["meta"]["num_frames"] == report["frames"]
    with open_database(str(four_coached_episodes)) as db:
        counts = compare(db, read)
        summaries = {s.id: s for s in list_episodes(db, limit=None)}
    assert _all_equal(counts), counts
    for ep in read["meta"]["episodes"]:  # the episode's tags travel in meta/episodes
        s = summaries[ep["coachlab/episode_id"]]
        assert (ep["coachlab/status"], ep["coachlab/quality"], ep["coachlab/seed"], ep["coachlab/task_family"]) == \
            (s.status, s.quality, s.seed, s.task_family)
        assert json.loads(ep["coachlab/vla_hello"])["policy"] == "coachlab-sim-skill-policy"
    assert {"observation.state", "action", "observation.images.base"} <= set(read["meta"]["stats_keys"])


def test_held_steps_are_filled_and_masked_and_corrections_are_interjections(held_and_corrected, tmp_path):
    from bench.export import compare
    from bench.lerobot_env import load
    from storage import load_episode, open_database
    from storage.export import ExportConfig, export_lerobot

    path, episode = held_and_corrected
    with open_database(str(path)) as db:
        record = load_episode(db, episode)
        steps = record.steps()
        held = ~np.isfinite(steps.action).all(axis=1)
        assert held[:4].all() and held.sum() >= 9, "the fixture recorded held steps"
        cols = export_lerobot(db, tmp_path / "cols", progress=False)
        idx = export_lerobot(db, tmp_path / "idx", ExportConfig(language="index"), progress=False)
        counts = compare(db, load(tmp_path / "idx"))
    assert _all_equal(counts), counts
    assert cols.held_frames == idx.held_frames == int(held.sum()) and cols.corrections == 1
    table = pq.read_table(tmp_path / "cols/data/chunk-000/file-000.parquet").to_pylist()
    assert [row["action_is_held"] for row in table] == held.tolist()
    acted = np.flatnonzero(~held)
    for k in np.flatnonzero(held):  # a held step repeats the last action sent (or the first, before any)
        source = acted[acted < k][-1] if (acted < k).any() else acted[0]
        assert table[k]["action"] == pytest.approx(steps.action[source].astype(np.float32).tolist())
    # the subtask rows: the same on every frame, each active from its first frame
    persistent = table[0]["language_persistent"]
    assert all(row["language_persistent"] == persistent for row in table)
    assert [(p["style"], p["content"]) for p in persistent] == [("subtask", "lift the red block"),
                                                                ("subtask", "pick up the red block")]
    texts = {g.id: g.text for g in record.segments}
    for k, row in enumerate(table):
        active = [p["content"] for p in persistent if p["timestamp"] <= row["timestamp"] + 1e-6]
        assert (active[-1] if active else "") == texts.get(int(steps.segment_id[k]), "")
    events = [(k, e) for k, row in enumerate(table) for e in row["language_events"]]
    correction_start = int(np.flatnonzero(steps.segment_id == max(texts))[0])
    assert events == [(correction_start, {"role": "user", "content": "pick up the red block",
                                          "style": "interjection", "camera": None, "tool_calls": None})]
    segments = pq.read_table(tmp_path / "cols/meta/coachlab_segments.parquet").to_pylist()
    assert [s["source"] for s in segments] == ["coach", "correction"]


def test_a_damaged_frame_is_skipped_and_reported(four_coached_episodes, tmp_path):
    from bench.export import compare
    from bench.lerobot_env import load
    from storage import open_database

    path = tmp_path / "coach.db"
    shutil.copy(four_coached_episodes, path)
    with sqlite3.connect(path) as con:
        (data,) = con.execute("SELECT data FROM frames WHERE episode_id=2 AND camera='wrist' AND step_index=7").fetchone()
        con.execute("UPDATE frames SET data=? WHERE episode_id=2 AND camera='wrist' AND step_index=7", (data[:200],))
    con.close()
    r = _cli("export", "--db", str(path), "--out", str(tmp_path / "ds"), "--task", "sort_blocks",
             "--language", "index", "--no-progress", "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["damaged_frames"] == [{"episode": 2, "camera": "wrist", "step": 7}]
    with open_database(str(path)) as db:
        counts = compare(db, load(tmp_path / "ds"), dropped={(2, "wrist", 7)})
        total_steps = sum(len(__import__("storage").load_episode(db, i).steps()) for i in range(1, 5))
    assert report["frames"] == total_steps - 1
    assert _all_equal(counts), counts


def test_bad_requests_get_one_sentence_and_write_nothing(four_coached_episodes, tmp_path):
    out = tmp_path / "ds"
    cases = [(["--task", "drawer"], "No episode in"), (["--format", "rlds"], "Unknown export format 'rlds'"),
             (["--control-mode", "joint"], "None of the 4 selected episodes can be exported")]
    for extra, said in cases:
        r = _cli("export", "--db", str(four_coached_episodes), "--out", str(out), *extra)
        assert r.returncode == 2 and said in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not out.exists() and not list(tmp_path.glob(".ds.partial-*"))
    (out / "old").mkdir(parents=True)
    r = _cli("export", "--db", str(four_coached_episodes), "--out", str(out))
    assert r.returncode == 2 and "already exists and is not empty" in r.stderr


def test_an_unwritable_out_folder_and_a_missing_video_library_are_one_sentence(four_coached_episodes, tmp_path,
                                                                              monkeypatch):
    from storage import open_database
    from storage.export import ExportError, export_lerobot

    from tests.support import remount_read_only, small_filesystem

    with open_database(str(four_coached_episodes)) as db:
        monkeypatch.setitem(sys.modules, "av", None)  # the fault: PyAV cannot be imported
        with pytest.raises(ExportError, match="needs PyAV"):
            export_lerobot(db, tmp_path / "ds", progress=False)
        monkeypatch.undo()
        with small_filesystem(tmp_path / "ro") as ro:
            remount_read_only(ro)
            with pytest.raises(ExportError, match="Cannot write to"):
                export_lerobot(db, ro / "ds", progress=False)
