"""Turning Python values into row values: task lookup, episode metadata columns, JSON-safe data."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.models import Task, utcnow

# Metadata keys with their own (filterable) episode column; every other key goes to `extra`.
METADATA_COLUMNS = ("speed", "quality", "control_mode", "notes")


def jsonable(value: Any) -> Any:
    """`value` with numpy scalars/arrays, tuples and non-finite floats made JSON-safe."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; PostgreSQL's jsonb would refuse them
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def check_quality(quality: Any) -> int | None:
    if quality is None:
        return None
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= int(quality) <= 5:
        raise ValueError(f"quality must be a whole number from 1 to 5 (or None), not {quality!r}.")
    return int(quality)


def split_metadata(metadata: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values for the episode's metadata columns, the remaining keys as JSON-safe `extra`)."""
    columns: dict[str, Any] = {}
    for key in METADATA_COLUMNS:
        if key not in metadata:
            continue
        value = metadata[key]
        if key == "quality":
            columns[key] = check_quality(value)
        else:  # speed may be a word ("normal") or a number; the column keeps its text form
            columns[key] = None if value is None else str(value)
    extra = {k: v for k, v in metadata.items() if k not in METADATA_COLUMNS}
    return columns, jsonable(extra)


def task_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def get_or_create_task(session: Session, text: str) -> int:
    """The id of the task with exactly this text, inserting it if new (safe against a concurrent insert)."""
    digest = task_hash(text)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(Task).values(text=text, text_sha256=digest, created_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["text_sha256"]))
    return int(session.scalar(sa.select(Task.id).where(Task.text_sha256 == digest)))
