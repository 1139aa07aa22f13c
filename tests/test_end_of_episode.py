"""Ending an episode while the arm moves (issue 21, fault 1): End while the last subtask ran turned
the database light red with "record_step was called with no episode being recorded".

Driven through the session API on the real threaded 20 Hz loop (the sim, the served sim policy, a
SQLite log), End comes right after a frame, at every phase of the tick. The one fault injected is a
slow final write of the episode row (a busy disk): it holds End open for several ticks, the window
in which the loop used to hand steps to a recorder that had already closed the episode.
"""

from __future__ import annotations

import time

import pytest

from coaching.session import EpisodeSettings
from support import wait_until

ENDS = 8  # End lands i/ENDS of a tick after a frame, for each i
TICK_S = 1 / 20


@pytest.fixture(scope="module")
def session(tmp_path_factory, coaching_session):
    with coaching_session(tmp_path_factory.mktemp("db") / "end.db") as s:
        yield s


def test_end_at_any_moment_of_a_tick_hands_no_step_to_the_ended_episode(session, monkeypatch):
    from storage import load_episode

    recorder = session.recorder
    write_end = recorder._write_end

    def slow_write_end(*args, **kwargs):  # the injected fault: the episode's final row takes 0.3 s (6 ticks)
        time.sleep(0.3)
        return write_end(*args, **kwargs)

    monkeypatch.setattr(recorder, "_write_end", slow_write_end)
    for i in range(ENDS):
        episode_id = session.start_episode(EpisodeSettings(task="Sort the blocks onto their pads.",
                                                           task_family="sort_blocks", seed=i), user="ana")
        seg = session.send_subtask("pick up the red block", user="ana")
        assert wait_until(lambda: seg.first_action_wall is not None, 15), session.status()
        time.sleep(0.3)
        assert session.status()["subtask_status"] == "running"  # mid-motion
        frame = session.wait_frame(0)
        session.wait_frame(frame.seq)  # a tick has just published its frame and is about to hand over its step
        time.sleep(i * TICK_S / ENDS)
        session.end_episode("success", user="ana")
        time.sleep(0.3)  # several ticks after End
        status = session.status()
        assert status["errors"] == [], f"End {i}: {status['errors']}"
        assert status["recorder"]["failing"] is None and status["recorder"]["dropped"] == 0
        record = load_episode(recorder.db, episode_id)
        assert record.summary.status == "success"
        assert record.summary.num_steps > 5 and record.frame_count("base") == record.summary.num_steps
        # filed under the subtask, or under none (before it was sent, and once End held the robot)
        assert seg.id in set(record.steps().segment_id) <= {seg.id, -1}
