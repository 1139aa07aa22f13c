"""Alembic migrations of the storage schema, run programmatically by storage.database (no alembic.ini)."""
