"""HTTP routes for what changes many times a second: camera streams and the session's status.

Gradio events are the right tool for buttons and forms, but a round trip through its queue per
frame cannot carry two cameras at 15+ fps. All cameras share one long-lived streamed response
(`GET /live/stream?cameras=base,wrist`) of length-prefixed records: a JSON header (sequence number, render
time) and the frame's JPEG. A stream costs the server one write per frame rather than a whole
request, which matters when several tabs watch and the control loop shares the cores and
Python's GIL with the web server. The page reads the stream with `fetch`, draws each JPEG on a
canvas and, from the render time, knows how old it is. Each frame is encoded once, however many
tabs watch. (MJPEG in an <img> would be simpler, but the page could not see frame times.)
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
from typing import Any, AsyncIterator, Callable

import cv2
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from coaching.perception import PerceptionWatcher
from coaching.session import CoachingSession, Frame

JPEG_QUALITY = 80
MAGIC = b"CLF1"  # record: MAGIC, u32 header length, header JSON, u32 JPEG length, JPEG (big-endian)


class FrameFeed:
    """Wakes the streams on the web server's event loop when the control loop publishes a frame."""

    def __init__(self, session: CoachingSession):
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: set[asyncio.Future] = set()
        self._latest: Frame | None = None
        self._jpegs: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()
        session.on_frame(self._published)

    def _published(self, frame: Frame) -> None:  # on the control loop's thread: hand over, return
        self._latest = frame
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def next(self, after_seq: int) -> Frame:
        self._loop = asyncio.get_running_loop()
        while self._latest is None or self._latest.seq <= after_seq:
            fut = self._loop.create_future()
            self._waiters.add(fut)
            await fut
        return self._latest

    def jpeg(self, camera: str, frame: Frame) -> bytes:
        key = (camera, frame.seq)
        with self._lock:
            if key in self._jpegs:
                return self._jpegs[key]
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame.images[camera], cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        with self._lock:
            self._jpegs = {k: v for k, v in self._jpegs.items() if k[1] >= frame.seq - 2}
            self._jpegs[key] = buf.tobytes()
        return self._jpegs[key]


def record(camera: str, frame: Frame, jpeg: bytes) -> bytes:
    header = json.dumps({"camera": camera, "seq": frame.seq, "time_ms": round(frame.wall_time * 1000, 1)}).encode()
    return MAGIC + struct.pack(">I", len(header)) + header + struct.pack(">I", len(jpeg)) + jpeg


def live_router(session: CoachingSession, health: Callable[[], dict[str, Any]],
                authorized: Callable[[Request], bool], perception: PerceptionWatcher | None = None) -> APIRouter:
    router = APIRouter(prefix="/live")
    feed = FrameFeed(session)
    known = set(session.description.cameras)

    def guard(request: Request) -> None:
        if not authorized(request):
            raise HTTPException(status_code=401, detail="Log in to watch the cameras.")

    @router.get("/stream")
    async def stream(request: Request, cameras: str = "") -> StreamingResponse:
        """Every camera asked for (comma list; all by default) in one stream: one write per frame."""
        guard(request)
        wanted = [c for c in cameras.split(",") if c] or sorted(known)
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise HTTPException(status_code=404, detail=f"No camera {unknown[0]!r}; this robot has {', '.join(sorted(known))}.")

        async def frames() -> AsyncIterator[bytes]:
            seq = 0
            while True:  # Starlette cancels this generator when the client goes away
                frame = await feed.next(seq)
                seq = frame.seq
                yield b"".join(record(c, frame, feed.jpeg(c, frame)) for c in wanted)

        return StreamingResponse(frames(), media_type="application/octet-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @router.get("/status")
    def status(request: Request) -> dict[str, Any]:
        guard(request)
        return {**session.status(), "health": health()}

    @router.get("/objects")
    def objects(request: Request) -> dict[str, Any]:
        """What the detector sees in the newest frame it looked at (`PerceptionWatcher.snapshot`)."""
        guard(request)
        if perception is None:
            return {"seq": None, "objects": [], "labels": [], "error": "This app runs without a detector."}
        return perception.snapshot()

    return router
