"""Which browser tab drives the running episode: one drives, every other watches, and says so.

The tab that starts an episode drives it; another tab may Take control (the first then watches).
A watching tab may still Pause and Stop (anyone who sees the robot must be able to hold it), but
not send subtasks, Try again, Resume or End. An episode this page did not start (an autonomous run,
a script) is free until a tab drives it.

Tabs are told apart by a key each browser tab keeps in its sessionStorage (`TAB_KEY_JS`, sent once
at page load, `remember`), not by Gradio's session hash alone: the hash is new after a reload, and a
coach who reloads the tab they drive from must still drive, not watch their own episode. A tab
opened any other way (a new or duplicated tab) gets a new key. The key only tells tabs apart; it
is no credential, since any tab may take control anyway.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import gradio as gr

from coaching.session import CoachingSession, SessionError


# The browser tab's key: kept across a reload (sessionStorage is per tab), new for any other load
# (a duplicated tab copies sessionStorage, but it is another tab).
TAB_KEY_JS = """
() => {
  const nav = performance.getEntriesByType('navigation')[0];
  let key = sessionStorage.getItem('coachlab.tab');
  if (!key || !nav || nav.type !== 'reload') {
    key = Math.random().toString(36).slice(2) + Date.now().toString(36);
    sessionStorage.setItem('coachlab.tab', key);
  }
  return key;
}
"""
_MAX_PAGES = 2000  # page loads remembered (session hash -> tab key); older ones fall back to their hash


class TabControl:
    def __init__(self, session: CoachingSession):
        self.session = session
        self._lock = threading.Lock()
        self._episode: int | None = None  # the episode the claim is about
        self._tab: str | None = None  # the driving tab's key
        self._user: str | None = None
        self._keys: OrderedDict[str, str] = OrderedDict()  # Gradio session hash -> browser tab key

    def remember(self, request: gr.Request | None, key: str | None) -> None:
        """The page load of `request` came from the browser tab with `key` (`TAB_KEY_JS`)."""
        page = getattr(request, "session_hash", None) if request is not None else None
        key = str(key or "").strip()[:64]
        if page is None or not key:
            return
        with self._lock:
            self._keys[page] = key
            self._keys.move_to_end(page)
            while len(self._keys) > _MAX_PAGES:
                self._keys.popitem(last=False)

    def claim(self, request: gr.Request | None, user: str) -> None:
        """The tab of `request` drives the running episode from now on."""
        tab = self._tab_of(request)
        with self._lock:
            self._episode, self._tab, self._user = self.session.episode_id, tab, user

    def check(self, request: gr.Request | None, user: str) -> None:
        """SessionError unless the tab of `request` may drive (it drives, or no tab does: it claims it)."""
        tab = self._tab_of(request)
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
        tab = self._tab_of(request)
        with self._lock:
            episode = self.session.episode_id
            if episode is None:
                return "", False
            if self._episode != episode or self._tab is None:
                return f"Episode {episode}: no tab drives it yet; the first to act drives.", False
            if tab == self._tab:
                return f"**You drive** episode {episode} from this tab.", False
            return (f"**Watching:** another tab ({self._user}) drives episode {episode}. Pause and Stop work "
                    "here; Take control to drive from this tab.", True)

    def _tab_of(self, request: gr.Request | None) -> str | None:
        """The browser tab of `request`: its remembered key, else its session hash."""
        page = getattr(request, "session_hash", None) if request is not None else None
        if page is None:
            return None
        with self._lock:
            return self._keys.get(page, page)
