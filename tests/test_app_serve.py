"""`coachlab app` announces its URL only once the server accepts connections (issue 22 fault 8)."""

from __future__ import annotations

import socket
import sys
import threading
import urllib.request

from support import wait_until


class _ConnectOnAnnounce:
    """A stdout that, the moment the URL line is written, tries one TCP connection to it: what a
    script reading the line (bench ui, a browser launcher) does next."""

    def __init__(self, app):
        self.app, self.lines, self.connected = app, [], None

    def write(self, text: str) -> int:
        if "coachlab is up at" in text and self.connected is None:
            try:
                socket.create_connection(("127.0.0.1", self.app.port), timeout=2).close()
                self.connected = True
            except OSError as e:
                self.connected = e
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:  # uvicorn's log formatter asks
        return False


def test_is_up_is_printed_when_the_server_accepts_connections(tmp_path, monkeypatch):
    from app.server import AppConfig, CoachingApp

    app = CoachingApp(AppConfig(port=0, db=str(tmp_path / "app.db"), sim_noise=0.0, subgoals="none", detector="none"))
    out = _ConnectOnAnnounce(app)
    monkeypatch.setattr(sys, "stdout", out)
    serving = threading.Thread(target=app.serve, daemon=True)
    serving.start()
    try:
        assert wait_until(lambda: out.connected is not None, 60), "the URL was never announced"
        assert out.connected is True, f"announced before accepting connections: {out.connected}"
        assert urllib.request.urlopen(app.url, timeout=10).status == 200
    finally:
        app.stop()
        serving.join(timeout=20)
    assert not serving.is_alive()
