"""Curating recorded episodes: edit their annotations (with an `annotation_edit` event saying what
changed, and who changed it), discard and restore them (a `discard` / `restore` event; the rows
stay, but listings, and so distillation and export, leave a discarded episode out), and delete
them with everything recorded with them."""

from __future__ import annotations

import socket
from typing import Any

import sqlalchemy as sa

from storage.database import Database
from storage.episodes import check_choice, get_episode_row
from storage.errors import NotFound, StorageError
from storage.models import FINAL_STATUSES, Episode, Event, Frame, Segment, Step, SubgoalImage, utcnow
from storage.recovery import writer_dead_reason
from storage.rows import check_quality, jsonable

_UNSET: Any = object()


def edit_annotations(db: Database, episode_id: int, user: str | None, *, quality: int | None = _UNSET,
                     status: str | None = None, outcome: str | None = None, notes: str | None = _UNSET,
                     segment_outcomes: dict[int, str | None] | None = None,
                     segment_mistakes: dict[int, bool] | None = None) -> dict[str, Any]:
    """Change an episode's annotations and write an `annotation_edit` event with before and after.

    `outcome` is another name for `status` (success, failure, aborted, interrupted). Pass
    `quality=None` / `notes=None` to clear them; leave them out to keep them. Returns the event data.
    """
    if outcome is not None and status is not None and outcome != status:
        raise StorageError("Give the episode's outcome once: status and outcome differ.")
    status = status if status is not None else outcome
    check_choice("outcome", status, FINAL_STATUSES)
    if quality is not _UNSET:
        try:
            quality = check_quality(quality)
        except ValueError as err:
            raise StorageError(str(err)) from None
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    with db.session() as s:
        ep = get_episode_row(s, db, episode_id)
        for key, value in (("status", status), ("quality", quality), ("notes", notes)):
            if value is _UNSET or (key == "status" and value is None):
                continue
            if getattr(ep, key) != value:
                before[key], after[key] = getattr(ep, key), value
                setattr(ep, key, value)
        seg_ids = set(segment_outcomes or {}) | set(segment_mistakes or {})
        segs = {g.id: g for g in s.scalars(sa.select(Segment).where(Segment.id.in_(seg_ids)))} if seg_ids else {}
        for seg_id in seg_ids:
            if seg_id not in segs or segs[seg_id].episode_id != episode_id:
                raise NotFound(f"Episode {episode_id} has no segment {seg_id}.")
        for seg_id, value in (segment_outcomes or {}).items():
            if segs[seg_id].outcome != value:
                before.setdefault("segments", {}).setdefault(str(seg_id), {})["outcome"] = segs[seg_id].outcome
                after.setdefault("segments", {}).setdefault(str(seg_id), {})["outcome"] = value
                segs[seg_id].outcome = value
        for seg_id, flag in (segment_mistakes or {}).items():
            if segs[seg_id].mistake != bool(flag):
                before.setdefault("segments", {}).setdefault(str(seg_id), {})["mistake"] = segs[seg_id].mistake
                after.setdefault("segments", {}).setdefault(str(seg_id), {})["mistake"] = bool(flag)
                segs[seg_id].mistake = bool(flag)
        data = jsonable({"before": before, "after": after})
        if after:
            s.add(Event(episode_id=episode_id, kind="annotation_edit", t=None, user_name=user, data=data,
                        created_at=utcnow()))
    return data


def discard_episode(db: Database, episode_id: int, user: str | None, reason: str | None = None) -> None:
    """Leave the episode out of every selection from now on (`list_episodes` hides it unless asked),
    keeping all its rows, with a `discard` event saying who and why. A live recording cannot be discarded."""
    with db.session() as s:
        ep = get_episode_row(s, db, episode_id)
        if ep.status == "running":
            raise StorageError(f"Episode {episode_id} is still running: end it before discarding it.")
        if ep.discarded_at is not None:
            raise StorageError(f"Episode {episode_id} is already discarded.")
        ep.discarded_at = utcnow()
        s.add(Event(episode_id=episode_id, kind="discard", t=None, user_name=user,
                    data=jsonable({"reason": (reason or "").strip() or None}), created_at=ep.discarded_at))


def restore_episode(db: Database, episode_id: int, user: str | None) -> None:
    """Undo `discard_episode`: the episode is selected again, and a `restore` event says who brought it back."""
    with db.session() as s:
        ep = get_episode_row(s, db, episode_id)
        if ep.discarded_at is None:
            raise StorageError(f"Episode {episode_id} is not discarded.")
        s.add(Event(episode_id=episode_id, kind="restore", t=None, user_name=user,
                    data=jsonable({"discarded_at": ep.discarded_at.isoformat()}), created_at=utcnow()))
        ep.discarded_at = None


def delete_episode(db: Database, episode_id: int) -> None:
    """Delete an episode and everything recorded with it. A live recording cannot be deleted."""
    with db.session() as s:
        ep = get_episode_row(s, db, episode_id)
        if ep.status == "running" and writer_dead_reason(ep, utcnow(), db.config.stale_after_s,
                                                         socket.gethostname()) is None:
            raise StorageError(f"Episode {episode_id} is still being recorded: end it before deleting it.")
        seg_ids = sa.select(Segment.id).where(Segment.episode_id == episode_id).scalar_subquery()
        # Explicit deletes, children first, so this works whether or not the backend cascades.
        s.execute(sa.delete(SubgoalImage).where(SubgoalImage.segment_id.in_(seg_ids)))
        for table in (Frame, Step, Event, Segment):
            s.execute(sa.delete(table).where(table.episode_id == episode_id))
        s.execute(sa.delete(Episode).where(Episode.id == episode_id))
