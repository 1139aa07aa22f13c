"""`coachlab app`: put the robot, the VLA, the database and the page together and serve them.

On the embedded default (`app/embedded.py`) that is the MuJoCo sim at 20 Hz, the sim skill policy
served by a child process over ZMQ, and SQLite; `--robot zmq://...` (a robot bridge,
`coaching/robot_bridge.py`), `--vla` and `--db` point at a lab's own. The live routes are
registered before Gradio is mounted at `/` (routes added after the mount are shadowed by it), and
they check Gradio's own login cookie, so one login covers the page, its camera streams and the
Episodes tab's replay (`app/replay_api.py`).
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import ExitStack
from typing import Any, Callable

import gradio as gr
import uvicorn
from fastapi import FastAPI, Request
from starlette.routing import Mount

from app import embedded
from app.app_config import AppConfig, AppConfigError  # noqa: F401 (AppConfigError: callers catch it here)
from app.live_api import live_router
from app.page_assets import PAGE_CSS, PAGE_JS
from app.replay_api import replay_router
from app.replay_assets import REPLAY_CSS, REPLAY_JS
from app.web import build_page
from coaching.vla import fit_vla
from coaching.detector import NO_DETECTOR
from coaching.perception import PerceptionWatcher
from coaching.session import CoachingSession


class CoachingApp:
    """Everything one running app owns; `serve()` in the foreground or `start()` on a thread."""

    def __init__(self, config: AppConfig):
        config.check()
        self.config = config
        self._stack = ExitStack()
        try:
            self._build()
        except BaseException:
            self._stack.close()
            raise

    def _build(self) -> None:
        from storage import Recorder, open_database

        c = self.config
        self.db = open_database(c.db)
        self._stack.callback(self.db.close)
        self.recorder = Recorder(self.db)
        self._stack.callback(self.recorder.close)
        robot = self._robot()
        self._stack.callback(robot.close)  # until the session's loop closes it on its own thread
        description = robot.describe()
        vla = self._stack.enter_context(embedded.vla(c.vla, server_key=c.vla_key, noise=c.sim_noise, control_hz=description.control_hz))
        fit_vla(vla, description, description.control_modes[0])
        subgoals = embedded.subgoal_generator(c.subgoals, vla)
        if hasattr(subgoals, "check_cameras"):  # a learned model must know this robot's cameras
            subgoals.check_cameras(description.cameras)
        task_families = description.extra.get("task_families") or {"default": ""}
        idle = (c.task_family if c.task_family in task_families else next(iter(task_families)), 0)
        detector = embedded.detector(c.detector, robot, self._vocabulary() if c.detector.startswith("owl:") else None)
        self.session = CoachingSession(robot, vla, self.recorder, subgoals=subgoals, idle_reset=idle).start()
        self._stack.callback(self.session.close)
        self.perception = None if detector is NO_DETECTOR else PerceptionWatcher(self.session, detector)
        if self.perception is not None:
            self._stack.callback(self.perception.close)
        self.fastapi = self._mount(build_page(self.session, self.db, task_families, detector))

    def _vocabulary(self) -> list[str]:
        """What an open-vocabulary detector looks for: the object phrases coaches have typed."""
        from distill.open_vocabulary import vocabulary_from_subtasks
        from storage.episodes import subtask_texts

        return vocabulary_from_subtasks(subtask_texts(self.db))

    def _robot(self):
        """The embedded MuJoCo sim, or a bridge to a robot process; nothing past here knows which."""
        if self.config.robot == embedded.EMBEDDED:
            return embedded.sim_robot(embedded.APP_CONTROL_HZ)
        from policy_client import parse_address
        from coaching.robot_bridge import BridgeRobot

        return BridgeRobot("tcp://" + parse_address(self.config.robot)[1], server_key=self.config.robot_key)

    def _mount(self, page: gr.Blocks) -> FastAPI:
        api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # no unauthenticated API pages
        holder: dict[str, Any] = {}

        def authorized(request: Request) -> bool:
            gradio_app = holder.get("gradio")
            if gradio_app is None or gradio_app.auth is None:
                return True
            cookie = gradio_app.cookie_id
            token = request.cookies.get(f"access-token-{cookie}") or request.cookies.get(f"access-token-unsecure-{cookie}")
            return token is not None and token in gradio_app.tokens

        api.include_router(live_router(self.session, self._health, authorized, self.perception))
        api.include_router(replay_router(self.db, authorized))
        # Gradio takes one script run at page load: the live page's, then the replay player's.
        page_js = f"() => {{ ({PAGE_JS})(); ({REPLAY_JS})(); }}"
        api = gr.mount_gradio_app(api, page, path="/", auth=self.config.auth, js=page_js, css=PAGE_CSS + REPLAY_CSS,
                                  footer_links=[], server_name=self.config.host, server_port=self.config.port)
        holder["gradio"] = next(r.app for r in api.routes if isinstance(r, Mount) and isinstance(r.app, gr.routes.App))
        return api

    def _health(self) -> dict[str, Any]:
        db_ok, db_text = True, self.db.display_url
        stats = self.recorder.stats
        if stats.failing:  # a passed error (space freed again) turns the light green again
            db_ok, db_text = False, str(stats.failing)
        status = self.session.status()
        alive = status["last_tick_age_s"] is not None and status["last_tick_age_s"] < 1.0
        return {"robot_ok": alive and status["loop_hz"] > 0.5 * self.session.description.control_hz,
                "database_ok": db_ok, "database": db_text}

    # -- serving ----------------------------------------------------------------------------
    def _server(self, announce: Callable[[], None] | None = None) -> tuple[uvicorn.Server, socket.socket]:
        """The uvicorn server and its bound socket; `announce()` runs once it accepts connections."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError as e:
            sock.close()
            raise AppConfigError(f"Cannot listen on {self.config.host}:{self.config.port} ({e.strerror}); "
                                 "choose another --port.") from None
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.config.host}:{self.port}/"
        config = uvicorn.Config(self.fastapi, log_level="warning", timeout_graceful_shutdown=1)
        return _AnnouncingServer(config, announce), sock

    def serve(self) -> None:
        """Serve in the foreground until Ctrl+C (or `stop()`); "coachlab is up at URL" is printed only
        once the server accepts connections (a bound socket is not yet listening)."""
        server, sock = self._server(lambda: print(f"coachlab is up at {self.url}  (Ctrl+C stops)", flush=True))
        self._serving = server
        try:
            server.run(sockets=[sock])
        finally:
            self._serving = None
            sock.close()
            self.close()

    def stop(self) -> None:
        """Make a foreground `serve()` return (from another thread or a signal handler)."""
        if getattr(self, "_serving", None) is not None:
            self._serving.should_exit = True

    def start(self) -> "CoachingApp":
        self._uvicorn, self._sock = self._server()
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        while not self._uvicorn.started:
            time.sleep(0.02)
        return self

    def close(self) -> None:
        if getattr(self, "_uvicorn", None) is not None:
            self._uvicorn.should_exit = True
            self._thread.join(timeout=10)
            self._sock.close()
            self._uvicorn = None
        self._stack.close()


class _AnnouncingServer(uvicorn.Server):
    """uvicorn's server, calling `announce()` right after startup, when its socket listens."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self._announce is not None:
            self._announce()
