"""The first schema: tasks, policies, episodes, segments, subgoal images, steps, frames, events.

Written out by hand (not imported from storage.models) so this version stays what it was when
models change later; a test checks that migrating an empty database to head matches the models.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.UniqueConstraint("text_sha256", name="uq_tasks_text_sha256"),
    )
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("checkpoint_path", sa.Text(), nullable=False),
        sa.Column("training_episode_ids", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_policies"),
    )
    op.create_table(
        "episodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("family", sa.Text(), nullable=True),
        sa.Column("robot", JSON, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("speed", sa.Text(), nullable=True),
        sa.Column("quality", sa.SmallInteger(), nullable=True),
        sa.Column("control_mode", sa.String(32), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("extra", JSON, nullable=False),
        sa.Column("vla_hello", JSON, nullable=True),
        sa.Column("policy_checkpoint_id", sa.Integer(), nullable=True),
        sa.Column("num_steps", sa.Integer(), nullable=False),
        sa.Column("writer_pid", sa.Integer(), nullable=True),
        sa.Column("writer_host", sa.Text(), nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.CheckConstraint("mode IN ('coached', 'autonomous', 'mixed')", name="ck_episodes_mode"),
        sa.CheckConstraint("status IN ('running', 'success', 'failure', 'aborted', 'interrupted')",
                           name="ck_episodes_status"),
        sa.CheckConstraint("quality IS NULL OR (quality >= 1 AND quality <= 5)", name="ck_episodes_quality"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_episodes_task_id_tasks"),
        sa.ForeignKeyConstraint(["policy_checkpoint_id"], ["policies.id"], ondelete="SET NULL",
                                name="fk_episodes_policy_checkpoint_id_policies"),
        sa.PrimaryKeyConstraint("id", name="pk_episodes"),
    )
    op.create_index("ix_episodes_task_id", "episodes", ["task_id"])
    op.create_index("ix_episodes_started_at", "episodes", ["started_at"])
    op.create_index("ix_episodes_status", "episodes", ["status"])
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=True),
        sa.Column("issued_at", sa.Float(), nullable=False),
        sa.Column("issued_wall", TS, nullable=False),
        sa.Column("first_step", sa.Integer(), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("mistake", sa.Boolean(), nullable=False),
        sa.Column("subgoal_sent", sa.Boolean(), nullable=False),
        sa.Column("info", JSON, nullable=True),
        sa.CheckConstraint("source IN ('coach', 'policy', 'correction')", name="ck_segments_source"),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"], ondelete="CASCADE",
                                name="fk_segments_episode_id_episodes"),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
    )
    op.create_index("ix_segments_episode_id", "segments", ["episode_id"])
    op.create_table(
        "subgoal_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("camera", sa.Text(), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"], ondelete="CASCADE",
                                name="fk_subgoal_images_segment_id_segments"),
        sa.PrimaryKeyConstraint("id", name="pk_subgoal_images"),
        sa.UniqueConstraint("segment_id", "camera", name="uq_subgoal_images_segment_id_camera"),
    )
    op.create_table(
        "steps",
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("step_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("action", sa.LargeBinary(), nullable=True),
        sa.Column("segment_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"], ondelete="CASCADE",
                                name="fk_steps_episode_id_episodes"),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"], ondelete="SET NULL",
                                name="fk_steps_segment_id_segments"),
        sa.PrimaryKeyConstraint("episode_id", "step_index", name="pk_steps"),
    )
    op.create_index("ix_steps_segment_id", "steps", ["segment_id"])
    op.create_table(
        "frames",
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("camera", sa.String(64), nullable=False),
        sa.Column("step_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"], ondelete="CASCADE",
                                name="fk_frames_episode_id_episodes"),
        sa.PrimaryKeyConstraint("episode_id", "camera", "step_index", name="pk_frames"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("t", sa.Float(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("user_name", sa.Text(), nullable=True),
        sa.Column("data", JSON, nullable=True),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"], ondelete="CASCADE",
                                name="fk_events_episode_id_episodes"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_episode_id", "events", ["episode_id"])
    if op.get_bind().dialect.name == "postgresql":
        # JPEG and PNG are compressed already: EXTERNAL stores them out of line without PostgreSQL
        # spending CPU on a second, futile compression pass.
        op.execute("ALTER TABLE frames ALTER COLUMN data SET STORAGE EXTERNAL")
        op.execute("ALTER TABLE subgoal_images ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    for index, table in (("ix_events_episode_id", "events"), ("ix_steps_segment_id", "steps"),
                         ("ix_segments_episode_id", "segments"), ("ix_episodes_status", "episodes"),
                         ("ix_episodes_started_at", "episodes"), ("ix_episodes_task_id", "episodes")):
        op.drop_index(index, table_name=table)
    for table in ("events", "frames", "steps", "subgoal_images", "segments", "episodes", "policies", "tasks"):
        op.drop_table(table)
