"""Queries on real SQLite files and a real PostgreSQL server: filters, annotation edits with their
event, deletion, distilled-policy registry, and the `coachlab episodes` command's handlers."""

from __future__ import annotations

import argparse
import json
from datetime import date, timedelta

import numpy as np
import pytest

from storage import (NotFound, Recorder, StorageError, delete_episode, edit_annotations, list_episodes,
                     list_policies, load_episode, open_database, register_policy)
from storage.models import utcnow


@pytest.fixture
def filled(db_url):
    """Three episodes: (task, task family, mode, status, quality)."""
    db = open_database(db_url)
    plan = [("bus the table", "bussing", "coached", "success", 5),
            ("open the drawer and stow the cup", "drawer", "autonomous", "failure", 2),
            ("Bus the TABLE quickly", "bussing", "mixed", "aborted", None)]
    ids = []
    with Recorder(db) as rec:
        for k, (task, task_family, mode, status, quality) in enumerate(plan):
            ids.append(rec.start_episode(task, {"name": "arm"}, mode=mode, user=f"user{k}", task_family=task_family,
                                         metadata={"quality": quality}))
            seg = rec.start_segment(f"step of {task}", "coach", 0.0)
            for i in range(3):
                rec.record_step(i / 10, np.zeros(2), np.ones(2), {"base": np.full((8, 8, 3), i, np.uint8)},
                                segment_id=seg)
            rec.end_segment(seg, "success")
            rec.end_episode(status)
    yield db, ids
    db.close()


def _ids(found):
    return sorted(e.id for e in found)


def test_list_and_filter(filled):
    db, (a, b, c) = filled
    assert [e.id for e in list_episodes(db)] == [c, b, a]  # newest first
    assert _ids(list_episodes(db, task="bussing")) == [a, c]  # a task family
    assert _ids(list_episodes(db, task="bus the table")) == [a, c]  # part of the text, any case
    assert _ids(list_episodes(db, task="drawer")) == [b]
    assert _ids(list_episodes(db, status="failure")) == [b]
    assert _ids(list_episodes(db, mode="mixed")) == [c]
    assert _ids(list_episodes(db, min_quality=3)) == [a]
    today = utcnow().date()
    assert _ids(list_episodes(db, since=today, until=today.isoformat())) == [a, b, c]
    assert list_episodes(db, since=today + timedelta(days=1)) == []
    assert list_episodes(db, until=date(2000, 1, 1)) == []
    assert len(list_episodes(db, limit=2)) == 2
    summary = list_episodes(db, status="success")[0].to_dict()
    assert summary["task_family"] == "bussing" and "family" not in summary
    assert summary["num_steps"] == 3 and summary["num_segments"] == 1 and summary["quality"] == 5
    assert json.dumps(summary)
    with pytest.raises(StorageError, match="Unknown status 'done'"):
        list_episodes(db, status="done")
    with pytest.raises(StorageError, match="not a date"):
        list_episodes(db, since="yesterday")


def test_edit_annotations_records_before_and_after(filled):
    db, (a, _, _) = filled
    seg_id = load_episode(db, a).segments[0].id
    data = edit_annotations(db, a, "reviewer", quality=3, outcome="failure", notes="it's \"fine\" 🤖",
                            segment_outcomes={seg_id: "failure"}, segment_mistakes={seg_id: True})
    assert data["before"] == {"status": "success", "quality": 5, "notes": None,
                              "segments": {str(seg_id): {"outcome": "success", "mistake": False}}}
    assert data["after"] == {"status": "failure", "quality": 3, "notes": "it's \"fine\" 🤖",
                             "segments": {str(seg_id): {"outcome": "failure", "mistake": True}}}
    ep = load_episode(db, a)
    assert (ep.summary.status, ep.summary.quality, ep.summary.notes) == ("failure", 3, "it's \"fine\" 🤖")
    assert (ep.segments[0].outcome, ep.segments[0].mistake) == ("failure", True)
    (edit,) = [e for e in ep.events if e.kind == "annotation_edit"]
    assert edit.user == "reviewer" and edit.data == data and edit.t is None
    assert edit_annotations(db, a, "reviewer", quality=3)["after"] == {}  # no change, no event
    assert len([e for e in load_episode(db, a).events if e.kind == "annotation_edit"]) == 1
    edit_annotations(db, a, "reviewer", quality=None)  # clearing is allowed
    assert load_episode(db, a).summary.quality is None


def test_edit_annotations_refuses_bad_values(filled):
    db, (a, b, _) = filled
    other_seg = load_episode(db, b).segments[0].id
    with pytest.raises(StorageError, match="1 to 5"):
        edit_annotations(db, a, "r", quality=6)
    with pytest.raises(StorageError, match="Unknown outcome 'running'"):
        edit_annotations(db, a, "r", status="running")
    with pytest.raises(NotFound, match=f"no segment {other_seg}"):
        edit_annotations(db, a, "r", segment_mistakes={other_seg: True})
    with pytest.raises(NotFound, match="no episode 999"):
        edit_annotations(db, 999, "r", quality=2)


def test_delete_episode_removes_everything_of_it(filled):
    db, (a, b, c) = filled
    delete_episode(db, b)
    assert _ids(list_episodes(db)) == [a, c]
    with pytest.raises(NotFound):
        load_episode(db, b)
    with db.engine.connect() as conn:
        for table in ("frames", "steps", "segments", "events"):
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table} WHERE episode_id = {b}").scalar() == 0
    assert load_episode(db, a).frame_count("base") == 3  # the others are untouched
    with pytest.raises(NotFound):
        delete_episode(db, b)


def test_a_live_recording_cannot_be_deleted(db_url):
    db = open_database(db_url)
    with Recorder(db) as rec:
        eid = rec.start_episode("live", {})
        with pytest.raises(StorageError, match="still being recorded"):
            delete_episode(db, eid)
        rec.end_episode("aborted")
    delete_episode(db, eid)
    db.close()


def test_policies_are_registered_and_linked(filled):
    db, (a, b, _) = filled
    pid = register_policy(db, "high_level", "/ckpt/run 1/model.pt", [a, b], {"success_rate": np.float32(0.75)})
    (p,) = list_policies(db)
    assert (p.id, p.kind, p.checkpoint_path, p.training_episode_ids, p.metrics) == (
        pid, "high_level", "/ckpt/run 1/model.pt", [a, b], {"success_rate": 0.75})
    with Recorder(db) as rec:
        eid = rec.start_episode("bus the table", {}, mode="autonomous", policy_checkpoint_id=pid)
        rec.end_episode("success")
    assert load_episode(db, eid).summary.policy_checkpoint_id == pid
    with Recorder(db) as rec, pytest.raises(StorageError, match="failed: .*(FOREIGN KEY|foreign key)"):
        rec.start_episode("bus the table", {}, mode="autonomous", policy_checkpoint_id=pid + 100)
    delete_episode(db, a)  # the checkpoint's provenance survives
    assert list_policies(db)[0].training_episode_ids == [a, b]


def _parse(argv):
    from app.episodes_command import add_parsers

    parser = argparse.ArgumentParser(prog="coachlab")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_episodes_command(filled, db_url):
    _, (a, b, c) = filled
    args = _parse(["episodes", "--db", db_url, "--task", "bussing", "--min-quality", "4", "--json"])
    out = args.func(args)
    assert args.json and out["count"] == 1 and out["episodes"][0]["id"] == a and json.dumps(out)
    args = _parse(["episodes", "show", str(b), "--db", db_url, "--json"])
    shown = args.func(args)
    assert args.json and shown["id"] == b and shown["status"] == "failure"
    assert shown["cameras"] == {"base": 3} and shown["segments"][0]["outcome"] == "success"
    assert json.dumps(shown)
    args = _parse(["episodes", "--db", db_url, "show", "424242"])
    with pytest.raises(StorageError, match="There is no episode 424242 in the database at"):
        args.func(args)


def test_episodes_command_rejects_bad_filters(capsys):
    for argv in (["episodes", "--min-quality", "9"], ["episodes", "--since", "last week"],
                 ["episodes", "--status", "done"]):
        with pytest.raises(SystemExit):
            _parse(argv)
    assert "quality is a whole number from 1 to 5" in capsys.readouterr().err
