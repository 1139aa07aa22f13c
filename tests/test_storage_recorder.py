"""The recorder on real SQLite files and a real PostgreSQL server: a full round trip, steps filed under
the segment that produced them, text stored verbatim, a loud bounded-queue overflow, a writer
failure that surfaces, two writer processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from storage import (Recorder, RecorderConfig, RecorderFailed, RecorderOverflow, StorageError, list_episodes,
                     load_episode, open_database)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def db(db_url):
    database = open_database(db_url)
    yield database
    database.close()


def scene(k: int, h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 4 + k) % 256, (y * 5) % 256, np.full_like(x, (k * 7) % 256)], -1).astype(np.uint8)


ROBOT = {"name": "test-arm", "cameras": ["base", "wrist"], "control_hz": 10.0, "state_names": ["a", "b", "c"]}


def test_round_trip(db):
    hello = {"server": "sim-skill", "action_horizon": 10, "takes_metadata": False}
    with Recorder(db, RecorderConfig(image_format="png", commit_every_s=0.05)) as rec:
        eid = rec.start_episode("put the cup in the bin", ROBOT, mode="mixed", user="ana", seed=7,
                                metadata={"speed": "normal", "quality": 4, "control_mode": "ee", "notes": "first",
                                          "mistake": False, "coach": "human"},
                                task_family="bussing", vla_hello=hello)
        base = rec.record_step(0.0, np.zeros(3), None, {"base": scene(0), "wrist": scene(100)},
                               segment_id=None)  # before any segment
        s1 = rec.start_segment("pick up the cup", "coach", 0.1, user="ana", subgoal_images={"base": scene(50)},
                               subgoal_sent=True)
        for k in range(1, 6):
            rec.record_step(k / 10, np.array([k, k + 0.5, -k]), np.arange(4) * k,
                            {"base": scene(k), "wrist": scene(100 + k)}, segment_id=s1)
        rec.end_segment(s1, "failure", info={"why": "slipped"})
        rec.event("takeover", 0.55, "ana", {"reason": "it slipped"})
        s2 = rec.start_segment("pick it up again", "correction", 0.6, user="ana", mistake=True)
        for k in range(6, 9):
            rec.record_step(k / 10, np.array([k, k + 0.5, -k]), np.arange(4) * k,
                            {"base": scene(k), "wrist": scene(100 + k)}, segment_id=s2)
        rec.end_segment(s2, "success")
        rec.end_episode("success", {"quality": 5})
        stats = rec.stats
    assert base == 0 and stats.queued == stats.written == 9 and stats.frames_written == 18
    assert stats.dropped == stats.lost == stats.writer_errors == 0

    ep = load_episode(db, eid)
    s = ep.summary
    assert (s.task, s.task_family, s.mode, s.status, s.user, s.seed, s.num_steps, s.num_segments) == (
        "put the cup in the bin", "bussing", "mixed", "success", "ana", 7, 9, 2)
    assert s.started_at < s.ended_at and s.started_at.tzinfo is not None
    assert ep.metadata == {"speed": "normal", "quality": 5, "control_mode": "ee", "notes": "first", "mistake": False,
                           "coach": "human"}
    assert ep.robot == ROBOT and ep.vla_hello == hello
    seg1, seg2 = ep.segments
    assert (seg1.text, seg1.source, seg1.first_step, seg1.last_step, seg1.outcome, seg1.mistake, seg1.subgoal_sent) == (
        "pick up the cup", "coach", 1, 5, "failure", False, True)
    assert seg1.info == {"why": "slipped"} and seg1.subgoal_cameras == ["base"]
    assert (seg2.source, seg2.first_step, seg2.last_step, seg2.mistake, seg2.subgoal_cameras) == (
        "correction", 6, 8, True, [])
    assert np.array_equal(ep.subgoal_image(seg1.id, "base"), scene(50))
    assert [(e.kind, e.t, e.user, e.data) for e in ep.events] == [("takeover", 0.55, "ana", {"reason": "it slipped"})]

    steps = ep.steps()
    assert list(steps.index) == list(range(9))
    assert list(steps.segment_id) == [-1] + [seg1.id] * 5 + [seg2.id] * 3
    assert np.allclose(steps.t, np.arange(9) / 10)
    assert np.array_equal(steps.state[4], [4, 4.5, -4]) and np.isnan(steps.action[0]).all()
    assert np.array_equal(steps.action[3], np.arange(4) * 3)
    assert ep.cameras() == {"base": 9, "wrist": 9} and ep.frame_count("base") == 9
    for k in range(9):  # PNG is lossless: the exact pixels come back, in RGB order
        assert np.array_equal(ep.frame("base", k), scene(k)) and np.array_equal(ep.frame("wrist", k), scene(100 + k))
    assert ep.frame_bytes("base", 2)[0] == "png"


def test_a_step_is_filed_under_the_segment_that_produced_it(db):
    """The id passed with each step decides, not which segment was started last: a step that an
    older subtask produced arrives after the next one started, and is still filed under it."""
    with Recorder(db, RecorderConfig(commit_every_s=0.02)) as rec:
        other = rec.start_episode("another episode", ROBOT)
        foreign = rec.start_segment("not this episode's", "coach", 0.0)
        rec.end_episode("aborted")
        eid = rec.start_episode("two subtasks overlap", ROBOT)
        s1 = rec.start_segment("pick up the cup", "coach", 0.0)
        rec.record_step(0.0, np.zeros(2), None, {}, segment_id=None)
        rec.record_step(0.1, np.zeros(2), None, {}, segment_id=s1)
        s2 = rec.start_segment("put it in the bin", "policy", 0.15)  # started by another thread, mid-step
        rec.record_step(0.2, np.zeros(2), None, {}, segment_id=s1)  # produced by s1, arriving late
        rec.record_step(0.3, np.zeros(2), None, {}, segment_id=s2)
        rec.end_segment(s2, "success")
        rec.record_step(0.4, np.zeros(2), None, {}, segment_id=s2)  # produced before s2 ended
        rec.record_step(0.5, np.zeros(2), None, {}, segment_id=None)  # nothing active
        for bad in (foreign, s2 + 1000):
            with pytest.raises(ValueError, match=f"Segment {bad} is not a segment of episode {eid}"):
                rec.record_step(0.6, np.zeros(2), None, {}, segment_id=bad)
        rec.end_episode("success")
    ep = load_episode(db, eid)
    assert list(ep.steps().segment_id) == [-1, s1, s1, s2, s2, -1]
    assert [(g.id, g.first_step, g.last_step) for g in ep.segments] == [(s1, 1, 2), (s2, 3, 4)]
    assert load_episode(db, other).summary.num_steps == 0


def test_jpeg_frames_are_close_and_small(db):
    with Recorder(db, RecorderConfig(image_format="jpeg", jpeg_quality=90)) as rec:
        eid = rec.start_episode("look", ROBOT)
        img = scene(3, 96, 128)
        rec.record_step(0.0, np.zeros(3), np.zeros(2), {"base": img}, segment_id=None)
        rec.end_episode("aborted")
    ep = load_episode(db, eid)
    fmt, data = ep.frame_bytes("base", 0)
    assert fmt == "jpeg" and data[:2] == b"\xff\xd8" and len(data) < img.nbytes / 3
    assert np.abs(ep.frame("base", 0).astype(int) - img).mean() < 4  # R stays R: channels not swapped


def test_the_caller_may_reuse_its_arrays(db):
    with Recorder(db, RecorderConfig(image_format="png")) as rec:
        eid = rec.start_episode("reuse", ROBOT)
        img, state = scene(1), np.ones(3)
        rec.record_step(0.0, state, None, {"base": img, "flipped": img[::-1, ::-1]}, segment_id=None)
        img[:] = 0
        state[:] = 0  # overwritten right after the call, as a loop reusing buffers would
        rec.end_episode("success")
    ep = load_episode(db, eid)
    assert np.array_equal(ep.frame("base", 0), scene(1)) and np.array_equal(ep.steps().state[0], np.ones(3))
    assert np.array_equal(ep.frame("flipped", 0), scene(1)[::-1, ::-1])


AWKWARD = [
    "it's \"quoted\" `back` 'single'; DROP TABLE episodes; --",
    "SELECT * FROM steps WHERE 1=1 OR '1'='1'; DELETE FROM frames",
    "emoji 🤖🍵🧽 and RTL שלום, CJK 拿起杯子, combining é, tab\tand\nnewline and \\backslash and %_ LIKE wildcards",
    "".join(chr(c) for c in np.random.default_rng(0).integers(0x20, 0x2FFF, 10_000)),
]


def test_text_is_stored_verbatim(db):
    long_text = AWKWARD[3] + "🤖"
    assert len(long_text) == 10_001
    with Recorder(db) as rec:
        eid = rec.start_episode(long_text, {"name": AWKWARD[0]}, user=AWKWARD[2],
                                metadata={"notes": AWKWARD[1], "speed": AWKWARD[2], "free": AWKWARD})
        sid = rec.start_segment(AWKWARD[1] + long_text, "coach", 0.0, user=AWKWARD[0])
        rec.record_step(0.0, np.zeros(2), None, {}, segment_id=sid)
        rec.event("annotation", 0.0, AWKWARD[2], {"text": long_text, AWKWARD[0]: AWKWARD[1]})
        rec.end_segment(sid, AWKWARD[0])
        rec.end_episode("success")
        # the same long text again finds the same task row
        second = rec.start_episode(long_text, {})
        rec.end_episode("failure")
    ep = load_episode(db, eid)
    assert ep.summary.task == long_text and ep.summary.user == AWKWARD[2]
    assert ep.metadata["notes"] == AWKWARD[1] and ep.metadata["speed"] == AWKWARD[2]
    assert ep.metadata["free"] == AWKWARD and ep.robot == {"name": AWKWARD[0]}
    assert ep.segments[0].text == AWKWARD[1] + long_text and ep.segments[0].outcome == AWKWARD[0]
    assert ep.events[0].data == {"text": long_text, AWKWARD[0]: AWKWARD[1]}
    assert load_episode(db, second).summary.task == long_text
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM tasks").scalar() == 1
    # filters treat quotes and LIKE wildcards as plain characters
    assert [e.id for e in list_episodes(db, task="%_ LIKE")] == []
    assert {e.id for e in list_episodes(db, task=long_text[:50])} == {eid, second}


class _Blocker:
    """Holds the database's write lock from another connection, as a slow disk or a long
    transaction elsewhere would, so the recorder's writer cannot commit."""

    def __init__(self, db) -> None:
        self.raw = db.engine.raw_connection()  # the driver's connection, outside SQLAlchemy's bookkeeping
        cur = self.raw.cursor()
        if db.backend == "sqlite":
            cur.execute("BEGIN EXCLUSIVE")  # our connections run in driver autocommit; BEGIN is ours to issue
        else:
            cur.execute("LOCK TABLE steps IN ACCESS EXCLUSIVE MODE")  # psycopg opened a transaction
        cur.close()

    def release(self) -> None:
        self.raw.rollback()
        self.raw.close()


def test_a_full_queue_is_a_loud_error_and_nothing_accepted_is_lost(db):
    rec = Recorder(db, RecorderConfig(max_queue_steps=5, commit_every_s=0.02))
    eid = rec.start_episode("overflow", ROBOT)
    blocker = _Blocker(db)
    accepted, error = 0, None
    try:
        for k in range(200):
            try:
                rec.record_step(k * 0.01, np.full(3, k), None, {"base": scene(k)}, segment_id=None)
                accepted += 1
            except RecorderOverflow as err:
                error = err
                break
            threading.Event().wait(0.005)
    finally:
        blocker.release()
    assert error is not None, "the queue never filled"
    text = str(error)
    assert "queue is full" in text and "NOT recorded" in text and "too slow" in text and "\n" not in text
    assert rec.stats.dropped == 1 and rec.stats.max_queue_depth == 5
    rec.end_episode("aborted")
    rec.close()
    steps = load_episode(db, eid).steps()
    assert list(steps.index) == list(range(accepted))  # every accepted step, no gap from the refused one


def test_a_writer_that_cannot_write_surfaces_on_the_next_call(db):
    rec = Recorder(db, RecorderConfig(commit_every_s=0.02, retry_for_s=0.3))
    eid = rec.start_episode("doomed", ROBOT)
    rec.record_step(0.0, np.zeros(3), None, {"base": scene(0)}, segment_id=None)
    rec.flush()
    with db.engine.begin() as conn:  # something outside breaks the schema under the recorder
        conn.exec_driver_sql("DROP TABLE frames")
    with pytest.raises(RecorderFailed) as err:
        for k in range(1, 400):
            rec.record_step(k * 0.01, np.zeros(3), None, {"base": scene(k)}, segment_id=None)
            threading.Event().wait(0.005)
    text = str(err.value)
    assert text.startswith("The recorder could not write to the database at") and "\n" not in text
    assert f"episode {eid} is saved only up to step 0" in text
    stats = rec.stats
    assert stats.writer_errors >= 1 and stats.lost >= 1 and stats.last_error
    with pytest.raises(RecorderFailed):  # the episode still gets its final status written
        rec.end_episode("aborted")
    rec.close()
    with db.engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT status, num_steps FROM episodes WHERE id = {eid}")).one() == ("aborted", 1)


def test_misuse_is_explained(db):
    with Recorder(db) as rec:
        with pytest.raises(StorageError, match="call start_episode first"):
            rec.record_step(0.0, np.zeros(2), None, {}, segment_id=None)
        rec.start_episode("x", {})
        with pytest.raises(TypeError, match="segment_id"):  # the loop must say which segment produced the step
            rec.record_step(0.0, np.zeros(2), None, {})
        with pytest.raises(ValueError, match="HxWx3 uint8"):
            rec.record_step(0.0, np.zeros(2), None, {"base": np.zeros((4, 4), np.float32)}, segment_id=None)
        with pytest.raises(ValueError, match="source must be one of"):
            rec.start_segment("x", "oracle", 0.0)
        with pytest.raises(StorageError, match="still being recorded"):
            rec.start_episode("y", {})
        with pytest.raises(ValueError, match="quality"):
            rec.end_episode("success", {"quality": 9})
        rec.end_episode("success")


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from storage import open_database, Recorder, RecorderConfig
    db = open_database(sys.argv[1])
    with Recorder(db, RecorderConfig(commit_every_s=0.02)) as rec:
        eid = rec.start_episode("shared task", {"name": sys.argv[2]}, user=sys.argv[2])
        for s in range(3):
            sid = rec.start_segment(f"{sys.argv[2]} subtask {s}", "coach", s)
            for k in range(20):
                i = s * 20 + k
                images = {"base": np.full((24, 32, 3), i, np.uint8), "wrist": np.full((24, 32, 3), 255 - i, np.uint8)}
                rec.record_step(i / 30, np.full(3, i), np.full(2, i), images, segment_id=sid)
            rec.event("pause", s + 0.5, sys.argv[2])
            rec.end_segment(sid, "success")
        rec.end_episode("success")
    print(eid)
""")


def test_two_processes_write_the_same_fresh_database_at_once(db_url):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, db_url, name], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
             for name in ("alice", "bob")]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    ids = sorted(int(out) for out, _ in outs)
    db = open_database(db_url)
    try:
        assert sorted(e.id for e in list_episodes(db)) == ids
        for eid in ids:
            ep = load_episode(db, eid)
            assert ep.summary.status == "success" and ep.summary.num_steps == 60
            assert ep.cameras() == {"base": 60, "wrist": 60}
            assert [(g.first_step, g.last_step) for g in ep.segments] == [(0, 19), (20, 39), (40, 59)]
            assert all(g.text.startswith(ep.summary.user) for g in ep.segments) and len(ep.events) == 3
            assert list(ep.steps().index) == list(range(60)) and ep.frame("wrist", 59)[0, 0, 0] == 255 - 59
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM tasks").scalar() == 1
    finally:
        db.close()
