"""Reading recorded episodes: list and filter them, load one with its segments and events.

It owns the records an episode is read as (`EpisodeSummary`, `EpisodeRecord`, `SegmentRecord`,
`EventRecord`, `StepArrays`); distillation, the app and export read episodes only through here.
`load_episode` returns the episode's rows (segments, events) at once, but steps and frames only on
demand: `steps()` reads arrays, `frame(camera, i)` decodes one image, `frame_bytes` hands out the
stored JPEG/PNG untouched (what a browser replay wants; also a function of its own, one query). A
stored frame that does not decode raises `DamagedFrame` naming episode, camera and step, and is
noted in the record's `damaged` list, so every reader (training, replay, subgoal pairs) can skip
that step, count it and say which it was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timezone
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.database import Database
from storage.errors import DamagedFrame, NotFound, StorageError
from storage.frames import decode_image
from storage.models import MODES, STATUSES, Episode, Event, Frame, Segment, Step, SubgoalImage, Task
from storage.rows import METADATA_COLUMNS, check_quality


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _as_datetime(value: datetime | date | str | None, end_of_day: bool = False) -> datetime | None:
    """A UTC datetime from a datetime, a date (its start, or its end for `until`) or an ISO string."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value.strip()) == 10 else datetime.fromisoformat(value)
        except ValueError:
            raise StorageError(f"'{value}' is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS].") from None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.max if end_of_day else time.min)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@dataclass
class EpisodeSummary:
    """One line of an episode listing."""

    id: int
    task: str
    task_family: str | None
    mode: str
    status: str
    user: str | None
    seed: int | None
    started_at: datetime
    ended_at: datetime | None
    num_steps: int
    num_segments: int
    quality: int | None
    speed: str | None
    control_mode: str | None
    notes: str | None
    policy_checkpoint_id: int | None
    discarded_at: datetime | None = None  # when a person discarded it (storage.curation); None: kept

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else round((self.ended_at - self.started_at).total_seconds(), 3)

    @property
    def discarded(self) -> bool:
        return self.discarded_at is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(started_at=_iso(self.started_at), ended_at=_iso(self.ended_at), duration_s=self.duration_s,
                 discarded_at=_iso(self.discarded_at))
        return d


@dataclass
class SegmentRecord:
    id: int
    ordinal: int
    text: str
    source: str
    user: str | None
    issued_at: float
    issued_wall: datetime
    first_step: int | None
    last_step: int | None
    outcome: str | None
    mistake: bool
    subgoal_sent: bool
    subgoal_cameras: list[str]
    info: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["issued_wall"] = _iso(self.issued_wall)
        return d


@dataclass
class EventRecord:
    id: int
    kind: str
    t: float | None
    created_at: datetime
    user: str | None
    data: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = _iso(self.created_at)
        return d


@dataclass
class StepArrays:
    """Steps as arrays. `action` rows are NaN where the robot held still (no action);
    `segment_id` is -1 where the step was filed under no segment. Ragged state/action become object arrays."""

    index: np.ndarray
    t: np.ndarray
    state: np.ndarray
    action: np.ndarray
    segment_id: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


def _stack(rows: list[bytes | None]) -> np.ndarray:
    arrays = [None if r is None else np.frombuffer(r, dtype="<f8") for r in rows]
    dims = {len(a) for a in arrays if a is not None}
    if len(dims) > 1:
        out = np.empty(len(arrays), dtype=object)
        out[:] = arrays
        return out
    dim = dims.pop() if dims else 0
    stacked = np.full((len(arrays), dim), np.nan)
    for i, a in enumerate(arrays):
        if a is not None:
            stacked[i] = a
    return stacked


@dataclass
class EpisodeRecord:
    """A loaded episode: its summary, descriptions, segments and events; steps and frames lazily."""

    summary: EpisodeSummary
    robot: dict[str, Any]
    metadata: dict[str, Any]
    vla_hello: dict[str, Any] | None
    segments: list[SegmentRecord]
    events: list[EventRecord]
    db: Database = field(repr=False)
    damaged: list[DamagedFrame] = field(default_factory=list, repr=False)  # frames found damaged so far

    @property
    def id(self) -> int:
        return self.summary.id

    def steps(self, start: int = 0, stop: int | None = None) -> StepArrays:
        """Steps with start <= index < stop, in order."""
        q = sa.select(Step.step_index, Step.t, Step.state, Step.action, Step.segment_id).where(
            Step.episode_id == self.id, Step.step_index >= start)
        if stop is not None:
            q = q.where(Step.step_index < stop)
        with self.db.session(readonly=True) as s:
            rows = s.execute(q.order_by(Step.step_index)).all()
        return StepArrays(index=np.array([r[0] for r in rows], dtype=np.int64),
                          t=np.array([r[1] for r in rows], dtype=np.float64),
                          state=_stack([r[2] for r in rows]), action=_stack([r[3] for r in rows]),
                          segment_id=np.array([-1 if r[4] is None else r[4] for r in rows], dtype=np.int64))

    def cameras(self) -> dict[str, int]:
        """Camera name -> number of stored frames."""
        with self.db.session(readonly=True) as s:
            rows = s.execute(sa.select(Frame.camera, sa.func.count()).where(Frame.episode_id == self.id)
                             .group_by(Frame.camera).order_by(Frame.camera)).all()
        return {cam: int(n) for cam, n in rows}

    def frame_count(self, camera: str) -> int:
        with self.db.session(readonly=True) as s:
            return int(s.scalar(sa.select(sa.func.count()).where(Frame.episode_id == self.id,
                                                                 Frame.camera == camera)) or 0)

    def frame_bytes(self, camera: str, step_index: int) -> tuple[str, bytes]:
        """(format, encoded bytes) of one frame, exactly as stored."""
        return frame_bytes(self.db, self.id, camera, step_index)

    def frame(self, camera: str, step_index: int) -> np.ndarray:
        """One frame decoded to RGB uint8 HxWx3; NotFound if it was not stored, DamagedFrame (also
        noted in `damaged`) if its bytes are not a readable image."""
        try:
            return decode_image(self.frame_bytes(camera, step_index)[1])
        except ValueError:
            raise self.note_damaged(camera, step_index) from None

    def note_damaged(self, camera: str, step_index: int) -> DamagedFrame:
        """Note (once) that the frame of `camera` at `step_index` is damaged; returns the error to raise
        or report. Readers that learn it from elsewhere (a cache) note it here too."""
        for known in self.damaged:
            if (known.camera, known.step_index) == (camera, int(step_index)):
                return known
        err = DamagedFrame(self.id, camera, int(step_index))
        self.damaged.append(err)
        return err

    def subgoal_image(self, segment_id: int, camera: str) -> np.ndarray:
        with self.db.session(readonly=True) as s:
            data = s.scalar(sa.select(SubgoalImage.data).where(SubgoalImage.segment_id == segment_id,
                                                                SubgoalImage.camera == camera))
        if data is None:
            raise NotFound(f"Segment {segment_id} has no subgoal image of camera '{camera}'.")
        try:
            return decode_image(bytes(data))
        except ValueError:
            raise StorageError(f"The stored subgoal image of segment {segment_id}, camera '{camera}' of episode "
                               f"{self.id} is damaged (not a readable JPEG or PNG image): preview it again.") from None

    def to_dict(self) -> dict[str, Any]:
        """Everything but the arrays, JSON-ready (what `coachlab episodes show` prints)."""
        return {**self.summary.to_dict(), "robot": self.robot, "metadata": self.metadata,
                "vla_hello": self.vla_hello, "cameras": self.cameras(),
                "segments": [s.to_dict() for s in self.segments], "events": [e.to_dict() for e in self.events]}


def frame_bytes(db: Database, episode_id: int, camera: str, step_index: int) -> tuple[str, bytes]:
    """(format, encoded bytes) of one stored frame, exactly as stored, in one query (what a browser
    replay fetches frame by frame); NotFound if it was not stored."""
    with db.session(readonly=True) as s:
        row = s.execute(sa.select(Frame.format, Frame.data).where(
            Frame.episode_id == episode_id, Frame.camera == camera, Frame.step_index == step_index)).first()
    if row is None:
        raise NotFound(f"Episode {episode_id} has no frame of camera '{camera}' at step {step_index}.")
    return row[0], bytes(row[1])


def _num_segments() -> sa.ScalarSelect[int]:
    return (sa.select(sa.func.count(Segment.id)).where(Segment.episode_id == Episode.id)
            .correlate(Episode).scalar_subquery())


def _summary(ep: Episode, task_text: str, num_segments: int) -> EpisodeSummary:
    return EpisodeSummary(id=ep.id, task=task_text, task_family=ep.task_family, mode=ep.mode, status=ep.status,
                          user=ep.user_name, seed=ep.seed, started_at=ep.started_at, ended_at=ep.ended_at,
                          num_steps=ep.num_steps, num_segments=int(num_segments), quality=ep.quality, speed=ep.speed,
                          control_mode=ep.control_mode, notes=ep.notes, policy_checkpoint_id=ep.policy_checkpoint_id,
                          discarded_at=ep.discarded_at)


def check_choice(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise StorageError(f"Unknown {name} '{value}': use one of {', '.join(allowed)}.")


def list_episodes(db: Database, task: str | None = None, status: str | None = None, mode: str | None = None,
                  min_quality: int | None = None, since: datetime | date | str | None = None,
                  until: datetime | date | str | None = None, limit: int | None = 100,
                  offset: int = 0, discarded: bool | None = False) -> list[EpisodeSummary]:
    """Episodes newest first. `task` matches a task family exactly or any part of the task text
    (case-insensitive); `since`/`until` bound the start time (a bare date covers that whole day).

    `discarded`: False (the default) leaves out the episodes a person discarded, so every selection
    built on this listing (distillation, export, the Distill tab's count) leaves them out too; True
    lists only those; None lists both."""
    check_choice("status", status, STATUSES)
    check_choice("mode", mode, MODES)
    if min_quality is not None:
        try:
            check_quality(min_quality)
        except ValueError as err:
            raise StorageError(str(err)) from None
    q = sa.select(Episode, Task.text, _num_segments()).join(Task, Task.id == Episode.task_id)
    if task:
        q = q.where(sa.or_(Episode.task_family == task, Task.text.icontains(task, autoescape=True)))
    if status:
        q = q.where(Episode.status == status)
    if mode:
        q = q.where(Episode.mode == mode)
    if min_quality is not None:
        q = q.where(Episode.quality >= min_quality)
    if discarded is not None:
        q = q.where(Episode.discarded_at.is_not(None) if discarded else Episode.discarded_at.is_(None))
    if (lo := _as_datetime(since)) is not None:
        q = q.where(Episode.started_at >= lo)
    if (hi := _as_datetime(until, end_of_day=True)) is not None:
        q = q.where(Episode.started_at <= hi)
    q = q.order_by(Episode.started_at.desc(), Episode.id.desc()).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    with db.session(readonly=True) as s:
        return [_summary(ep, text, n) for ep, text, n in s.execute(q).all()]


def _metadata(ep: Episode) -> dict[str, Any]:
    meta = dict(ep.extra or {})
    for key in METADATA_COLUMNS:
        if getattr(ep, key) is not None:
            meta[key] = getattr(ep, key)
    return meta


def get_episode_row(s: Session, db: Database, episode_id: int) -> Episode:
    """The episode's row in session `s`, or NotFound in one sentence."""
    ep = s.get(Episode, episode_id)
    if ep is None:
        raise NotFound(f"There is no episode {episode_id} in the database at {db.display_url}.")
    return ep


def load_episode(db: Database, episode_id: int) -> EpisodeRecord:
    """The episode with its segments and events; its steps and frames are read when asked for."""
    with db.session(readonly=True) as s:
        ep = get_episode_row(s, db, episode_id)
        task_text = s.scalar(sa.select(Task.text).where(Task.id == ep.task_id))
        cams: dict[int, list[str]] = {}
        for seg_id, cam in s.execute(sa.select(SubgoalImage.segment_id, SubgoalImage.camera)
                                     .join(Segment, Segment.id == SubgoalImage.segment_id)
                                     .where(Segment.episode_id == episode_id).order_by(SubgoalImage.camera)):
            cams.setdefault(seg_id, []).append(cam)
        segments = [SegmentRecord(id=g.id, ordinal=g.ordinal, text=g.text, source=g.source, user=g.user_name,
                                  issued_at=g.issued_at, issued_wall=g.issued_wall, first_step=g.first_step,
                                  last_step=g.last_step, outcome=g.outcome, mistake=g.mistake,
                                  subgoal_sent=g.subgoal_sent, subgoal_cameras=cams.get(g.id, []), info=g.info)
                    for g in s.scalars(sa.select(Segment).where(Segment.episode_id == episode_id)
                                       .order_by(Segment.ordinal))]
        events = [EventRecord(id=e.id, kind=e.kind, t=e.t, created_at=e.created_at, user=e.user_name, data=e.data)
                  for e in s.scalars(sa.select(Event).where(Event.episode_id == episode_id).order_by(Event.id))]
        return EpisodeRecord(summary=_summary(ep, task_text or "", len(segments)), robot=ep.robot,
                             metadata=_metadata(ep), vla_hello=ep.vla_hello, segments=segments, events=events, db=db)


def subtask_texts(db: Database, limit: int = 5000) -> list[str]:
    """The distinct subtask texts of the logged segments, most recent first, at most `limit`."""
    with db.session(readonly=True) as s:
        rows = s.execute(sa.select(Segment.text, sa.func.max(Segment.id).label("last")).group_by(Segment.text)
                         .order_by(sa.desc("last")).limit(limit)).all()
    return [r[0] for r in rows]
