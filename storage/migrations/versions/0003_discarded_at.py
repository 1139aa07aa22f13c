"""Add `episodes.discarded_at`: when a person discarded the episode (null: kept).

A discarded episode keeps all its rows; `list_episodes` (and so distillation and export) leaves it
out unless asked for it. A new nullable column, added in place on both backends (SQLite's ADD
COLUMN); as in 0002 the batch never recreates the table, whose drop would cascade-delete every
segment, step, frame and event.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("episodes", recreate="never") as batch:
        batch.add_column(sa.Column("discarded_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("episodes", recreate="never") as batch:
        batch.drop_column("discarded_at")
