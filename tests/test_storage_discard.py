"""Discarding and restoring episodes on real SQLite files and a real PostgreSQL server: the rows stay,
a `discard` / `restore` event says who and why, listings (and so distillation and `coachlab
episodes`) leave a discarded episode out unless asked, and a running episode cannot be discarded."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from storage import (Recorder, StorageError, discard_episode, list_episodes, load_episode, open_database,
                     restore_episode)


@pytest.fixture
def two(db_url):
    db = open_database(db_url)
    ids = []
    with Recorder(db) as rec:
        for seed in (1, 2):
            ids.append(rec.start_episode("bus the table", {"name": "arm"}, user="ana", seed=seed, task_family="bussing"))
            seg = rec.start_segment("pick up the cup", "coach", 0.0)
            for i in range(3):
                rec.record_step(i / 10, np.zeros(2), np.ones(2), {"base": np.full((8, 8, 3), i, np.uint8)},
                                segment_id=seg)
            rec.end_episode("success")
    yield db, ids
    db.close()


def test_a_discarded_episode_is_kept_and_left_out(two, db_url):
    from app.episodes_command import cmd_episodes

    db, (a, b) = two
    discard_episode(db, a, "ben", reason="  the cup fell off the table  ")
    assert [e.id for e in list_episodes(db)] == [b]
    assert [e.id for e in list_episodes(db, discarded=True)] == [a]
    assert sorted(e.id for e in list_episodes(db, discarded=None)) == [a, b]
    record = load_episode(db, a)
    assert record.summary.discarded and record.summary.to_dict()["discarded_at"]
    assert record.summary.num_steps == 3 and record.frame_count("base") == 3 and len(record.steps()) == 3
    (event,) = [e for e in record.events if e.kind == "discard"]
    assert (event.user, event.data) == ("ben", {"reason": "the cup fell off the table"})
    with pytest.raises(StorageError, match="already discarded"):
        discard_episode(db, a, "ben")

    args = dict(db=db_url, task=None, status=None, mode=None, min_quality=None, since=None, until=None, limit=100)
    assert [e["id"] for e in cmd_episodes(argparse.Namespace(**args, discarded=False))["episodes"]] == [b]
    assert [e["id"] for e in cmd_episodes(argparse.Namespace(**args, discarded=True))["episodes"]] == [a]

    restore_episode(db, a, "cy")
    assert sorted(e.id for e in list_episodes(db)) == [a, b]
    kinds = [(e.kind, e.user) for e in load_episode(db, a).events]
    assert kinds[-2:] == [("discard", "ben"), ("restore", "cy")]
    with pytest.raises(StorageError, match="is not discarded"):
        restore_episode(db, a, "cy")


def test_a_running_episode_cannot_be_discarded(db_url):
    db = open_database(db_url)
    try:
        with Recorder(db) as rec:
            episode_id = rec.start_episode("bus the table", {"name": "arm"})
            with pytest.raises(StorageError, match="still running: end it before discarding"):
                discard_episode(db, episode_id, "ana")
            rec.end_episode("aborted")
        discard_episode(db, episode_id, "ana")
        assert list_episodes(db) == []
    finally:
        db.close()
