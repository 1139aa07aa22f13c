"""What every tab's event handlers share: the person behind a request (`user_of`), how a
person's mistake comes back to them (`fail`: one sentence in a toast, the robot holds meanwhile),
and the words a timeline gives a segment's outcome and its marks (`outcome_word`, `MARKS`).
"""

from __future__ import annotations

import getpass

import gradio as gr


def _local_user() -> str:
    try:
        return getpass.getuser() or "local"
    except (KeyError, OSError):  # a container user with no passwd entry
        return "local"


LOCAL_USER = _local_user()


def user_of(request: gr.Request | None) -> str:
    """The logged-in user of `request`, else the local account the app runs as."""
    return (request.username if request is not None and request.username else None) or LOCAL_USER


def fail(err: Exception) -> gr.Error:
    """The toast for a person's or the environment's mistake: the error's one sentence."""
    return gr.Error(str(err), duration=8)


# A mark a person gives a segment: (button word, the logged outcome or None, mistake or None).
MARKS = {"success": ("success", None), "failed": ("failure", None), "mistake": (None, True)}


def outcome_word(outcome: str | None) -> str:
    """A logged segment outcome as a timeline shows it (`coaching/activity.py` for the automatic ones)."""
    return {"failure": "failed"}.get(outcome or "", outcome or "")
