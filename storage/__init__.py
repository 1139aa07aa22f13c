"""coachlab storage: the SQL schema and migrations, the episode recorder, frame encoding, queries.

Everything public is importable from here; the names load lazily, so importing
`storage.errors` (for `StorageError`) does not pull in SQLAlchemy, OpenCV or numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StorageError": "storage.errors", "NotFound": "storage.errors", "RecorderOverflow": "storage.errors",
    "RecorderFailed": "storage.errors",
    "Database": "storage.database", "DatabaseConfig": "storage.database", "open_database": "storage.database",
    "resolve_url": "storage.database", "default_sqlite_path": "storage.database",
    "Recorder": "storage.recorder", "RecorderConfig": "storage.recorder", "RecorderStats": "storage.recorder",
    "EpisodeSummary": "storage.queries", "EpisodeRecord": "storage.queries", "SegmentRecord": "storage.queries",
    "EventRecord": "storage.queries", "StepArrays": "storage.queries", "PolicyRecord": "storage.queries",
    "list_episodes": "storage.queries", "load_episode": "storage.queries", "edit_annotations": "storage.queries",
    "delete_episode": "storage.queries", "register_policy": "storage.queries", "list_policies": "storage.queries",
    "encode_image": "storage.frames", "decode_image": "storage.frames",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'storage' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
