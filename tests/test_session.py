"""The coaching session without a browser: a real sim, the served sim policy, a real SQLite log."""

from __future__ import annotations

import time

import numpy as np
import pytest

from coaching.session import EpisodeSettings, SessionError
from support import wait_until


@pytest.fixture(scope="module")
def session(tmp_path_factory, coaching_session):
    with coaching_session(tmp_path_factory.mktemp("db") / "session.db", subgoals="sim") as s:
        yield s


def test_a_coached_episode_is_driven_and_logged(session):
    from storage import load_episode

    with pytest.raises(SessionError, match="No episode is running"):
        session.send_subtask("pick up the red block", user="ana")
    episode_id = session.start_episode(EpisodeSettings(task="Sort the blocks onto their pads.", task_family="sort_blocks",
                                                       seed=0, quality=4), user="ana")
    start_frame = session.wait_frame(0)
    for bad, needle in (("", "Type a subtask"), ("x" * 10_000, "keep it under")):
        with pytest.raises(SessionError, match=needle):
            session.send_subtask(bad, user="ana")
    with pytest.raises(SessionError, match="Preview this subtask first"):
        session.send_subtask("pick up the red block", user="ana", with_subgoals=True)
    with pytest.raises(SessionError, match="unicorn"):
        session.preview("pick up the unicorn")
    preview = session.preview("pick up the red block")
    assert set(preview.images) == {"base", "wrist"}
    assert np.abs(preview.images["wrist"].astype(int) - start_frame.images["wrist"]).mean() > 2
    seg = session.send_subtask("pick up the red block", user="ana", with_subgoals=True)
    assert seg.with_subgoals
    assert wait_until(lambda: seg.first_action_wall is not None), session.status()
    assert wait_until(lambda: session.status()["loop_hz"] > 15)
    time.sleep(3.0)
    moved = session.wait_frame(0)
    assert np.abs(moved.images["wrist"].astype(int) - start_frame.images["wrist"]).mean() > 2  # the hand moved

    session.pause(user="ana")
    held = session.wait_frame(0).images["base"]
    time.sleep(0.5)
    assert np.abs(session.wait_frame(0).images["base"].astype(int) - held).mean() < 1.0  # paused: holds still
    session.resume(user="ana")
    session.stop(user="ana")
    assert session.status()["subtask"] is None
    session.mark_segment(seg.id, user="ben", outcome="failure", mistake=True)
    session.try_again(user="ana")
    time.sleep(0.5)
    session.end_episode("success", user="ana", quality=5, notes="stopped once")
    assert session.status()["episode_id"] is None

    record = load_episode(session.recorder.db, episode_id)
    assert (record.summary.status, record.summary.quality, record.summary.notes) == ("success", 5, "stopped once")
    texts = [(s.text, s.source, s.user) for s in record.segments]
    assert texts == [("pick up the red block", "coach", "ana"), ("pick up the red block", "correction", "ana")]
    assert record.segments[0].outcome == "failure" and record.segments[0].mistake
    assert record.segments[0].subgoal_sent and record.segments[0].subgoal_cameras == ["base", "wrist"]
    assert record.subgoal_image(record.segments[0].id, "base").shape == (224, 224, 3)
    kinds = [e.kind for e in record.events]
    assert {"pause", "resume", "stop", "annotation_edit"} <= set(kinds)
    assert record.summary.num_steps > 40 and record.frame_count("base") == record.summary.num_steps


def test_bad_settings_are_refused(session):
    with pytest.raises(SessionError, match="Describe the task"):
        session.start_episode(EpisodeSettings(task="  ", task_family="sort_blocks"), user="ana")
    with pytest.raises(SessionError, match="Quality"):
        session.start_episode(EpisodeSettings(task="t", task_family="sort_blocks", quality=9), user="ana")
    with pytest.raises(SessionError, match="Cannot start the episode: Unknown task"):
        session.start_episode(EpisodeSettings(task="t", task_family="juggling"), user="ana")
    assert session.status()["episode_id"] is None


def test_a_resumed_subtask_is_not_idle_until_the_arm_has_worked_again(session):
    """A pause mid-approach, held for longer than the idle window: right after resume the page read
    "idle, likely done" (the arm had been still during the pause) until the new chunk moved it, so a
    coach who then sent "put it in the tub" had it refused: the item was not yet held."""
    session.start_episode(EpisodeSettings(task="Sort the blocks onto their pads.", task_family="sort_blocks", seed=0),
                          user="ana")
    try:
        seg = session.send_subtask("pick up the red block", user="ana")
        assert wait_until(lambda: seg.first_action_wall is not None, 15), session.status()
        time.sleep(0.6)  # on the way to the block
        session.pause(user="ana")
        time.sleep(1.0)  # still for longer than the idle window
        session.resume(user="ana")
        seen = []
        end = time.monotonic() + 30
        while time.monotonic() < end and (not seen or seen[-1] != "idle"):
            seen.append(session.status()["subtask_status"])
            time.sleep(0.02)
        assert seen[0] == "running" and seen[-1] == "idle", seen
        assert session.loop.observation.env_state["gripper"]["held"] == "red_block"  # idle meant done
    finally:
        session.end_episode("aborted", user="ana")
