"""Crash safety: a recording process killed with SIGKILL loses at most the last second of steps,
and the next open marks its episode `interrupted`, kept whole up to that point; a live recording
in another process is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from storage import list_episodes, load_episode, open_database
from storage.models import Episode, utcnow
from storage.recovery import recover_interrupted

REPO = Path(__file__).resolve().parents[1]
HZ = 30

# Records at 30 Hz (images included) until killed, printing each step index once it is queued.
RECORDING = textwrap.dedent(f"""
    import sys, time, numpy as np
    from storage import open_database, Recorder
    db = open_database(sys.argv[1])
    rec = Recorder(db)
    eid = rec.start_episode("survive a crash", {{"name": "child"}}, seed=3)
    print("episode", eid, flush=True)
    seg = rec.start_segment("keep going", "coach", 0.0)
    start, k = time.monotonic(), 0
    while True:
        time.sleep(max(0.0, start + k / {HZ} - time.monotonic()))
        img = np.full((48, 64, 3), k % 256, np.uint8)
        rec.record_step(k / {HZ}, np.full(4, float(k)), np.full(2, float(k)), {{"base": img, "wrist": img}},
                        segment_id=seg)
        print(k, flush=True)
        k += 1
""")


def _start_child(db_url: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", RECORDING, db_url], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    line = proc.stdout.readline()
    if not line.startswith("episode"):
        proc.kill()
        raise AssertionError(f"the recording child failed: {proc.communicate()[1]}")
    return proc, int(line.split()[1])


def _read_until(proc: subprocess.Popen, step: int) -> int:
    while True:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        if int(line) >= step:
            return int(line)


def test_sigkill_mid_episode_loses_at_most_the_last_second(db_url):
    proc, eid = _start_child(db_url)
    last_queued = _read_until(proc, 2 * HZ)  # two seconds in
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    db = open_database(db_url)  # the next start finds and marks the episode
    try:
        ep = load_episode(db, eid)
        assert ep.summary.status == "interrupted"
        assert ep.summary.ended_at is not None and ep.summary.num_steps == len(ep.steps())
        steps = ep.steps()
        kept = len(steps)
        print(f"queued {last_queued + 1} steps before the kill, kept {kept}")
        assert kept >= last_queued + 1 - HZ, f"kept {kept} of {last_queued + 1} steps: more than a second lost"
        assert list(steps.index) == list(range(kept))  # whole up to the crash: no holes
        assert np.array_equal(steps.state[:, 0], np.arange(kept))
        assert ep.cameras() == {"base": kept, "wrist": kept}
        assert ep.frame("wrist", kept - 1)[0, 0, 0] == (kept - 1) % 256
        (seg,) = ep.segments
        assert (seg.first_step, seg.last_step) == (0, kept - 1)
        (event,) = [e for e in ep.events if e.kind == "interrupted"]
        assert "is gone" in event.data["reason"] and event.data["steps_kept"] == kept
    finally:
        db.close()
    reopened = open_database(db_url)  # recovery happens once: no second event
    assert [e.kind for e in load_episode(reopened, eid).events] == ["interrupted"]
    reopened.close()


def test_a_live_recording_in_another_process_is_left_alone(db_url):
    proc, eid = _start_child(db_url)
    try:
        _read_until(proc, 5)
        db = open_database(db_url)
        try:
            assert load_episode(db, eid).summary.status == "running"
            assert [e.id for e in list_episodes(db, status="running")] == [eid]
        finally:
            db.close()
    finally:
        proc.kill()
        proc.wait()


def test_a_stale_heartbeat_counts_as_dead_even_from_another_host(tmp_path):
    db = open_database(f"sqlite:///{tmp_path}/c.db")
    try:
        from storage import Recorder

        rec = Recorder(db)
        eid = rec.start_episode("elsewhere", {})
        rec.record_step(0.0, np.zeros(2), None, {}, segment_id=None)
        rec.flush()
        with db.session() as s:  # pretend another machine wrote it and went quiet 40 s ago
            s.execute(sa.update(Episode).where(Episode.id == eid).values(
                writer_host="some-other-host", heartbeat_at=utcnow() - timedelta(seconds=40)))
        assert recover_interrupted(db, stale_after_s=60) == []
        assert recover_interrupted(db, stale_after_s=30) == [eid]
        ep = load_episode(db, eid)
        assert ep.summary.status == "interrupted" and "has not written for" in ep.events[-1].data["reason"]
        rec.close()
    finally:
        db.close()


def test_an_idle_recorder_keeps_its_heartbeat_fresh(tmp_path):
    from storage import Recorder, RecorderConfig

    db = open_database(f"sqlite:///{tmp_path}/c.db")
    with Recorder(db, RecorderConfig(heartbeat_every_s=0.1)) as rec:
        eid = rec.start_episode("paused", {})
        with db.session() as s:
            first = s.get(Episode, eid).heartbeat_at
        time.sleep(0.5)  # no steps at all, as during a long pause
        with db.session() as s:
            assert s.get(Episode, eid).heartbeat_at > first
        rec.end_episode("success")
    db.close()
