"""Alembic environment: runs migrations on the connection storage.database hands over.

storage.database opens the transaction (and takes a lock so two processes opening a fresh database
at once do not both create tables) before calling Alembic, so this only wires things up.
"""

from __future__ import annotations

from alembic import context

from storage.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("storage migrations run through storage.open_database(), which passes a connection.")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
