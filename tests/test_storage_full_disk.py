"""A full disk under the database is named as such and recovered from (issue 22 fault 2).

The database lives on a real 6 MB tmpfs; a filler file takes most of it; the real MuJoCo sim's two
cameras are recorded at 20 Hz until SQLite reports "database or disk is full". Before the fix the
failure was never cleared (the app keeps one recorder for its life), and the first error was
sometimes "too slow to keep up; lower the camera rate", wrong advice for a full disk.
"""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest

from support import small_filesystem


def _record_until_error(recorder, images, state, limit_s: float = 60.0):
    """Record at 20 Hz until the recorder raises; (steps accepted, the error)."""
    from storage.errors import StorageError

    seg = recorder.start_segment("pick up the red block", "coach", 0.0)
    end = time.monotonic() + limit_s
    i = 0
    while time.monotonic() < end:
        try:
            recorder.record_step(i * 0.05, state, np.zeros(6), images, segment_id=seg)
        except StorageError as e:
            return i, e
        i += 1
        time.sleep(0.05)
    pytest.fail("the disk never filled")


@pytest.mark.parametrize("retry_for_s, max_queue_steps, first_error", [
    # Each case leaves a 10x margin between the two clocks, so the first error is the one named even on a
    # loaded machine (CI once filled a 1.5 s queue before a 1 s retry gave up: commits there are slow).
    (1.0, 200, "RecorderFailed"),  # the writer gives up (1 s) long before the queue fills (10 s at 20 Hz)
    (5.0, 10, "RecorderOverflow"),  # the queue fills (0.5 s) while the writer still retries: blame the disk, not speed
])
def test_full_disk_is_named_and_recording_resumes_once_space_is_back(tmp_path, robot, retry_for_s, max_queue_steps,
                                                                     first_error):
    from storage import Recorder, RecorderConfig, open_database

    robot.reset("sort_blocks", 0)
    obs = robot.observe()
    with small_filesystem(tmp_path / "small", "6m") as disk:
        filler = disk / "filler.bin"
        db = open_database(str(disk / "coach.db"))
        recorder = Recorder(db, RecorderConfig(retry_for_s=retry_for_s, max_queue_steps=max_queue_steps))
        try:
            filler.write_bytes(b"\0" * (4 << 20))
            first = recorder.start_episode("sort the blocks", robot.describe(), task_family="sort_blocks")
            accepted, error = _record_until_error(recorder, obs.images, obs.state)
            message = str(error)
            assert type(error).__name__ == first_error
            assert "database or disk is full" in message and "free space" in message, message
            assert "too slow" not in message and "camera rate" not in message
            assert recorder.stats.failing is not None  # the app's database light is red
            with pytest.raises(Exception, match="full"):  # still full: ending says why, it does not hang
                recorder.end_episode("aborted")
            written_before = recorder.stats.written
            assert written_before > 0

            filler.unlink()  # space is back; same recorder, no restart
            second = recorder.start_episode("sort the blocks", robot.describe(), task_family="sort_blocks")
            assert recorder.stats.failing is None  # the light turns green again
            seg = recorder.start_segment("pick up the blue block", "coach", 0.0)
            for i in range(20):
                recorder.record_step(i * 0.05, obs.state, np.zeros(6), obs.images, segment_id=seg)
                time.sleep(0.05)
            assert recorder.end_episode("success") == second
        finally:
            recorder.close()
            db.close()
        with sqlite3.connect(disk / "coach.db") as con:
            rows = dict(con.execute("SELECT id, status FROM episodes").fetchall())
            steps = dict(con.execute("SELECT episode_id, count(*) FROM steps GROUP BY episode_id").fetchall())
            frames = con.execute("SELECT count(*) FROM frames WHERE episode_id=?", (second,)).fetchone()[0]
        con.close()
        assert rows == {first: "aborted", second: "success"}  # the refused end was written once space was back
        assert steps[first] == written_before and steps[first] <= accepted  # every committed step kept
        assert steps[second] == 20 and frames == 40
