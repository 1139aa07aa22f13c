"""The SQL schema as SQLAlchemy 2 typed ORM classes (docs/schema.md explains every table).

The migrations in storage/migrations create exactly this schema; a test compares the two. Free
text is `Text` everywhere so any length and any character is stored verbatim. Arrays (state,
action) are little-endian float64 bytes: compact, exact for what the robot reported, identical on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.vocab import FINAL_STATUSES, MODES, SOURCES, STATUSES

__all__ = ["FINAL_STATUSES", "MODES", "SOURCES", "STATUSES", "Base", "Task", "Policy", "Episode", "Segment",
           "SubgoalImage", "Step", "Frame", "Event", "UTCDateTime", "utcnow"]

# Explicit constraint names, so migrations can refer to them on both backends.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite itself would hand back naive ones)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        # SQLite stores text; dropping the offset keeps every stored value in one sortable form.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


class Task(Base):
    """One distinct task text. Looked up by a hash because a btree index on long text would fail."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.Text)
    text_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    episodes: Mapped[list[Episode]] = relationship(back_populates="task")


class Policy(Base):
    """A distilled high-level policy checkpoint and what it was trained from."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    checkpoint_path: Mapped[str] = mapped_column(sa.Text)
    # Ids, not foreign keys: a checkpoint's provenance must survive deleting an episode later.
    training_episode_ids: Mapped[list[Any]] = mapped_column()
    metrics: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Episode(Base):
    """One coached, autonomous or mixed run of a task, with its metadata and writer liveness."""

    __tablename__ = "episodes"
    __table_args__ = (
        sa.CheckConstraint(f"mode IN {MODES!r}", name="mode"),
        sa.CheckConstraint(f"status IN {STATUSES!r}", name="status"),
        sa.CheckConstraint("quality IS NULL OR (quality >= 1 AND quality <= 5)", name="quality"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(sa.ForeignKey("tasks.id"), index=True)
    task_family: Mapped[str | None] = mapped_column(sa.Text)  # the sim's task family, when the sim ran it
    robot: Mapped[dict[str, Any]] = mapped_column()
    mode: Mapped[str] = mapped_column(sa.String(16))
    user_name: Mapped[str | None] = mapped_column(sa.Text)
    seed: Mapped[int | None] = mapped_column(sa.BigInteger)
    started_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    speed: Mapped[str | None] = mapped_column(sa.Text)
    quality: Mapped[int | None] = mapped_column(sa.SmallInteger)
    control_mode: Mapped[str | None] = mapped_column(sa.String(32))
    notes: Mapped[str | None] = mapped_column(sa.Text)
    extra: Mapped[dict[str, Any]] = mapped_column()  # every other metadata key, verbatim
    vla_hello: Mapped[dict[str, Any] | None] = mapped_column()
    policy_checkpoint_id: Mapped[int | None] = mapped_column(sa.ForeignKey("policies.id", ondelete="SET NULL"))
    num_steps: Mapped[int] = mapped_column(default=0)
    # Who writes this episode and when it last committed: how a later open tells a crashed
    # recording (marked interrupted) from a live one in another process (left alone).
    writer_pid: Mapped[int | None] = mapped_column()
    writer_host: Mapped[str | None] = mapped_column(sa.Text)
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    # Set when a person discards the episode (storage/curation.py): its rows stay, with a `discard`
    # event saying who and why, but selections for distillation and export leave it out.
    discarded_at: Mapped[datetime | None] = mapped_column()

    task: Mapped[Task] = relationship(back_populates="episodes")
    segments: Mapped[list[Segment]] = relationship(order_by="Segment.ordinal", passive_deletes=True)
    events: Mapped[list[Event]] = relationship(order_by="Event.id", passive_deletes=True)


class Segment(Base):
    """One subtask of an episode: its text, who issued it, which steps it covered, how it went."""

    __tablename__ = "segments"
    __table_args__ = (sa.CheckConstraint(f"source IN {SOURCES!r}", name="source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    episode_id: Mapped[int] = mapped_column(sa.ForeignKey("episodes.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column()  # 0, 1, 2 ... within the episode
    text: Mapped[str] = mapped_column(sa.Text)
    source: Mapped[str] = mapped_column(sa.String(16))
    user_name: Mapped[str | None] = mapped_column(sa.Text)
    issued_at: Mapped[float] = mapped_column(sa.Float)  # seconds on the loop's clock
    issued_wall: Mapped[datetime] = mapped_column(default=utcnow)
    first_step: Mapped[int | None] = mapped_column()  # None until a step is recorded under it
    last_step: Mapped[int | None] = mapped_column()
    outcome: Mapped[str | None] = mapped_column(sa.Text)
    mistake: Mapped[bool] = mapped_column(default=False)
    subgoal_sent: Mapped[bool] = mapped_column(default=False)
    info: Mapped[dict[str, Any] | None] = mapped_column()

    subgoal_images: Mapped[list[SubgoalImage]] = relationship(order_by="SubgoalImage.camera", passive_deletes=True)


class SubgoalImage(Base):
    """A previewed subgoal image of one camera for one segment (sent to the VLA or not)."""

    __tablename__ = "subgoal_images"
    __table_args__ = (sa.UniqueConstraint("segment_id", "camera"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    segment_id: Mapped[int] = mapped_column(sa.ForeignKey("segments.id", ondelete="CASCADE"))
    camera: Mapped[str] = mapped_column(sa.Text)
    format: Mapped[str] = mapped_column(sa.String(8))
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class Step(Base):
    """One control step: time, proprio state, the action sent (None = held still), the segment that produced it."""

    __tablename__ = "steps"

    episode_id: Mapped[int] = mapped_column(sa.ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True)
    step_index: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    t: Mapped[float] = mapped_column(sa.Float)  # seconds on the loop's clock
    state: Mapped[bytes] = mapped_column(sa.LargeBinary)  # float64 little-endian
    action: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    # Indexed so deleting a segment does not scan every step of every episode.
    segment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("segments.id", ondelete="SET NULL"), index=True)


class Frame(Base):
    """One encoded camera image of one step. Keyed camera-first so one camera's replay is a range scan."""

    __tablename__ = "frames"

    episode_id: Mapped[int] = mapped_column(sa.ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True)
    camera: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    step_index: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    format: Mapped[str] = mapped_column(sa.String(8))
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class Event(Base):
    """Something a person or the app did during or after an episode: pause, takeover, an edit."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    episode_id: Mapped[int] = mapped_column(sa.ForeignKey("episodes.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    t: Mapped[float | None] = mapped_column(sa.Float)  # loop clock; None for edits made afterwards
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    user_name: Mapped[str | None] = mapped_column(sa.Text)
    data: Mapped[dict[str, Any] | None] = mapped_column()
