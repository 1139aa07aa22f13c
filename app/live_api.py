"""HTTP routes for what changes many times a second: camera frames and the session's status.

Gradio events are the right tool for buttons and forms, but a round trip through its queue per
frame cannot carry two cameras at 15+ fps. So each camera is long-polled as plain JPEG
(`GET /live/frames/{camera}?after=SEQ`): the request waits until a frame newer than SEQ exists,
and the reply carries its sequence number and render time in headers, so the page can draw it on
a canvas and know how old it is. Each frame is encoded once, however many tabs watch.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import cv2
from fastapi import APIRouter, HTTPException, Request, Response

from coaching.session import CoachingSession

JPEG_QUALITY = 80


class FrameEncoder:
    """JPEG of the newest frame per camera, encoded at most once per frame."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, bytes]] = {}

    def encode(self, camera: str, seq: int, image) -> bytes:
        with self._lock:
            cached = self._cache.get(camera)
            if cached and cached[0] == seq:
                return cached[1]
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        data = buf.tobytes()
        with self._lock:
            self._cache[camera] = (seq, data)
        return data


def live_router(session: CoachingSession, health: Callable[[], dict[str, Any]],
                authorized: Callable[[Request], bool]) -> APIRouter:
    router = APIRouter(prefix="/live")
    encoder = FrameEncoder()
    cameras = set(session.description.cameras)

    def guard(request: Request) -> None:
        if not authorized(request):
            raise HTTPException(status_code=401, detail="Log in to watch the cameras.")

    @router.get("/frames/{camera}")
    def frame(camera: str, request: Request, after: int = 0) -> Response:
        guard(request)
        if camera not in cameras:
            raise HTTPException(status_code=404, detail=f"No camera {camera!r}; this robot has {', '.join(sorted(cameras))}.")
        latest = session.wait_frame(after, timeout_s=1.0)
        if latest is None:
            return Response(status_code=204)
        return Response(encoder.encode(camera, latest.seq, latest.images[camera]), media_type="image/jpeg",
                        headers={"X-Frame-Seq": str(latest.seq), "X-Frame-Time": f"{latest.wall_time * 1000:.1f}",
                                 "Cache-Control": "no-store"})

    @router.get("/status")
    def status(request: Request) -> dict[str, Any]:
        guard(request)
        return {**session.status(), "health": health()}

    return router
