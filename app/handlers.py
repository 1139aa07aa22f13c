"""What every tab's event handlers share: the person behind a request (`user_of`) and how a
person's mistake comes back to them (`fail`: one sentence in a toast, the robot holds meanwhile).
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
