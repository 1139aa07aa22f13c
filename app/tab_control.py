"""Which browser tab drives the running episode: one drives, every other watches, and says so.

The tab that starts an episode drives it; another tab may Take control (the first then watches).
A watching tab may still Pause and Stop (anyone who sees the robot must be able to hold it), but
not send subtasks, Try again, Resume or End. Tabs are told apart by Gradio's per-tab session hash;
an episode this page did not start (an autonomous run, a script) is free until a tab drives it.
"""

from __future__ import annotations

import threading

import gradio as gr

from coaching.session import CoachingSession, SessionError


class TabControl:
    def __init__(self, session: CoachingSession):
        self.session = session
        self._lock = threading.Lock()
        self._episode: int | None = None  # the episode the claim is about
        self._tab: str | None = None  # the driving tab's session hash
        self._user: str | None = None

    def claim(self, request: gr.Request | None, user: str) -> None:
        """The tab of `request` drives the running episode from now on."""
        with self._lock:
            self._episode, self._tab, self._user = self.session.episode_id, _tab_of(request), user

    def check(self, request: gr.Request | None, user: str) -> None:
        """SessionError unless the tab of `request` may drive (it drives, or no tab does: it claims it)."""
        tab = _tab_of(request)
        with self._lock:
            episode = self.session.episode_id
            if self._episode != episode or self._tab is None or tab is None:
                self._episode, self._tab, self._user = episode, tab, user
                return
            if tab != self._tab:
                raise SessionError(f"Another tab ({self._user}) drives this episode: press Take control to drive "
                                   "from here (Pause and Stop work from any tab).")

    def describe(self, request: gr.Request | None) -> tuple[str, bool]:
        """(what the tab of `request` is told, whether it may take control)."""
        with self._lock:
            episode = self.session.episode_id
            if episode is None:
                return "", False
            if self._episode != episode or self._tab is None:
                return f"Episode {episode}: no tab drives it yet; the first to act drives.", False
            if _tab_of(request) == self._tab:
                return f"**You drive** episode {episode} from this tab.", False
            return (f"**Watching:** another tab ({self._user}) drives episode {episode}. Pause and Stop work "
                    "here; Take control to drive from this tab.", True)


def _tab_of(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None
