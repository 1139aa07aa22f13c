"""coachlab storage: the SQL schema and migrations, the episode recorder, frame encoding, and reading
(episodes), curating (curation: annotations, discard and restore) and the registry of distilled
checkpoints (checkpoints).

Everything public is importable from here; the names load lazily, so importing
`storage.errors` (for `StorageError`) does not pull in SQLAlchemy, OpenCV or numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StorageError": "storage.errors", "NotFound": "storage.errors", "RecorderOverflow": "storage.errors",
    "RecorderFailed": "storage.errors", "DamagedFrame": "storage.errors",
    "Database": "storage.database", "DatabaseConfig": "storage.database", "open_database": "storage.database",
    "resolve_url": "storage.database", "configured_url": "storage.database",
    "default_sqlite_path": "storage.database",
    "Recorder": "storage.recorder", "RecorderConfig": "storage.recorder", "RecorderStats": "storage.recorder",
    "EpisodeSummary": "storage.episodes", "EpisodeRecord": "storage.episodes", "SegmentRecord": "storage.episodes",
    "EventRecord": "storage.episodes", "StepArrays": "storage.episodes",
    "list_episodes": "storage.episodes", "load_episode": "storage.episodes",
    "edit_annotations": "storage.curation", "delete_episode": "storage.curation",
    "discard_episode": "storage.curation", "restore_episode": "storage.curation",
    "PolicyRecord": "storage.checkpoints", "register_policy": "storage.checkpoints",
    "list_policies": "storage.checkpoints",
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
