"""Errors storage raises. Each message is one sentence that says what went wrong and what to do.

This module imports nothing heavy, so the command line can catch `StorageError` without loading
SQLAlchemy.
"""

from __future__ import annotations


class StorageError(Exception):
    """A database problem a user can act on (wrong URL, server down, missing episode, ...)."""


class ReadOnlyDatabase(StorageError):
    """The database cannot be written (a read-only file or mount, or opened only to read)."""


class NotFound(StorageError):
    """The asked-for row (an episode, a segment, a frame) is not in the database."""


class DamagedFrame(StorageError):
    """A stored frame that is not a readable image (cut short, overwritten): readers skip its step and
    count it. `episode_id`, `camera`, `step_index` say which; the message says so in one sentence."""

    def __init__(self, episode_id: int, camera: str, step_index: int, why: str = "not a readable JPEG or PNG image"):
        super().__init__(f"The stored frame of episode {episode_id}, camera '{camera}', step {step_index} is damaged "
                         f"({why}), so that step is skipped: re-record the episode if it matters.")
        self.episode_id, self.camera, self.step_index = episode_id, camera, step_index

    def to_dict(self) -> dict[str, object]:
        return {"episode": self.episode_id, "camera": self.camera, "step": self.step_index}


class RecorderOverflow(StorageError):
    """The recorder's bounded queue was full, so a step was refused (and not recorded)."""


class RecorderFailed(StorageError):
    """The recorder's writer thread could not write to the database; recording has stopped."""


def first_line(err: BaseException) -> str:
    """The first meaningful line of a driver error, without SQLAlchemy's '(Background ...)' tail."""
    orig = getattr(err, "orig", None)  # SQLAlchemy wraps the DBAPI error; its text is the useful part
    text = str(orig if orig is not None else err).strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.rstrip(".")
    return type(err).__name__


def is_read_only(err: BaseException | str) -> bool:
    """Whether a driver error (or its first line) says the database cannot be written (SQLite's
    READONLY, PostgreSQL's read-only transaction)."""
    text = (err if isinstance(err, str) else first_line(err)).lower()
    return "readonly database" in text or "read-only" in text or "read only" in text


def is_disk_full(err: BaseException | str) -> bool:
    """Whether a driver error (or its first line) says the disk (or the database's size limit) is full."""
    text = (err if isinstance(err, str) else first_line(err)).lower()
    return "database or disk is full" in text or "no space left on device" in text or "disk full" in text
