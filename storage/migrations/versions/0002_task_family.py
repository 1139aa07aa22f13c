"""Rename `episodes.family` to `episodes.task_family`, the design's word for it; values are kept.

A rename in place on both backends: PostgreSQL's `ALTER TABLE ... RENAME COLUMN`, and SQLite's
own (3.25 and later). The batch is told never to recreate the table, because SQLite's
copy-and-swap would drop `episodes` with foreign keys on, and that drop deletes every segment,
step, frame and event of every episode through their ON DELETE CASCADE.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("episodes", recreate="never") as batch:
        batch.alter_column("family", new_column_name="task_family")


def downgrade() -> None:
    with op.batch_alter_table("episodes", recreate="never") as batch:
        batch.alter_column("task_family", new_column_name="family")
