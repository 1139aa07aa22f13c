"""Databases that may only be read (issue 22 fault 3).

A cleanly closed SQLite file (WAL mode, so reading it normally needs a -shm file beside it) on a real
read-only mount: before the fix `coachlab episodes` and `coachlab episodes show 1` exited with "unable
to open database file". Listing, showing and distilling must work read-only; writing must say it is
read-only; and a command that only reads must never create a database that does not exist.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import remount_read_only, small_filesystem

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def read_only_db(four_coached_episodes, tmp_path_factory):
    with small_filesystem(tmp_path_factory.mktemp("ro") / "mnt", "64m") as mnt:
        shutil.copy(four_coached_episodes, mnt / "coach.db")
        remount_read_only(mnt)
        with pytest.raises(OSError):
            (mnt / "probe").write_text("x")  # really read-only, even for root
        yield mnt / "coach.db"


def test_episodes_lists_and_shows_a_read_only_database(read_only_db):
    listed = _cli("episodes", "--db", str(read_only_db), "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["count"] == 4
    shown = _cli("episodes", "show", "1", "--db", str(read_only_db), "--json")
    assert shown.returncode == 0, shown.stderr
    episode = json.loads(shown.stdout)
    assert episode["id"] == 1 and episode["segments"] and episode["cameras"] == {"base": episode["num_steps"],
                                                                                "wrist": episode["num_steps"]}
    assert sorted(p.name for p in read_only_db.parent.iterdir()) == ["coach.db"]


def test_distill_reads_a_read_only_database_and_says_it_cannot_register(read_only_db, tmp_path):
    r = _cli("distill", "--db", str(read_only_db), "--out", str(tmp_path / "policy"), "--epochs", "1",
             "--no-progress", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads(r.stdout)
    assert "policy_id" not in metrics
    assert "is read-only" in metrics["not_registered"] and "use it by its folder" in metrics["not_registered"]
    assert (tmp_path / "policy" / "training.json").is_file()


def test_writing_a_read_only_database_says_it_is_read_only(read_only_db):
    from storage import Recorder, open_database
    from storage.database import READ_ONLY
    from storage.errors import ReadOnlyDatabase

    with pytest.raises(ReadOnlyDatabase, match="is read-only .*writable copy or location"):
        open_database(str(read_only_db))  # a command that records (the app, coach --db)
    app = _cli("coach", "--task", "sort_blocks", "--episodes", "1", "--db", str(read_only_db), timeout=300)
    assert app.returncode == 2 and "is read-only" in app.stderr and "Traceback" not in app.stderr
    with open_database(str(read_only_db), READ_ONLY) as db, Recorder(db) as recorder:
        with pytest.raises(ReadOnlyDatabase, match="opened read-only, so nothing can be written"):
            recorder.start_episode("bus the table", {"name": "arm"})


def test_reading_a_database_that_does_not_exist_creates_nothing(tmp_path):
    missing = tmp_path / "nowhere" / "coach.db"
    for args in (["episodes"], ["episodes", "show", "1"]):
        r = _cli(*args, "--db", str(missing))
        assert r.returncode == 2
        assert r.stderr.strip() == (f"coachlab {args[0]}: There is no database at {missing}: record episodes there "
                                    "first (coachlab coach --db, or the app), or name the right one with --db or "
                                    "COACHLAB_DB.")
    r = _cli("distill", "--db", str(missing), "--out", str(tmp_path / "policy"), "--epochs", "1")
    assert r.returncode == 2 and "There is no database" in r.stderr
    assert not missing.parent.exists()
