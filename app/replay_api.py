"""HTTP routes the Episodes tab's replay player reads a stored episode from (`app/replay_assets.py`).

Playing an episode back at its own pace (20 frames a second per camera, faster at 2x or 4x) is a
job for the browser: a Gradio event per frame would queue behind every other event and re-encode
each frame. So the player fetches, once, the episode's step times and which segment each step
belongs to (`GET /replay/{episode}/steps`), then each frame as it is stored, JPEG or PNG bytes
untouched (`GET /replay/{episode}/frame/{camera}/{step}`). The routes check the same login as the
live routes (`app/live_api.py`).
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, HTTPException, Request, Response

from app.handlers import outcome_word
from storage import Database, StorageError, load_episode
from storage.episodes import frame_bytes
from storage.errors import NotFound

MEDIA = {"jpeg": "image/jpeg", "png": "image/png"}


def replay_router(db: Database, authorized: Callable[[Request], bool]) -> APIRouter:
    router = APIRouter(prefix="/replay")

    def guard(request: Request) -> None:
        if not authorized(request):
            raise HTTPException(status_code=401, detail="Log in to replay episodes.")

    @router.get("/{episode_id}/steps")
    def steps(request: Request, episode_id: int) -> dict[str, Any]:
        """Step times (s from the episode's start), each step's segment (an index into `segments`, -1 for
        none), the segments as the timeline shows them, and the frames stored per camera."""
        guard(request)
        try:
            record = load_episode(db, episode_id)
            arrays = record.steps()
            cameras = record.cameras()
        except NotFound as e:
            raise HTTPException(status_code=404, detail=str(e)) from None
        except StorageError as e:
            raise HTTPException(status_code=503, detail=str(e)) from None
        segments = sorted(record.segments, key=lambda g: g.ordinal)
        index = {g.id: i for i, g in enumerate(segments)}
        return {
            "episode": episode_id,
            # in every frame URL, so a browser never shows a cached frame of a deleted episode whose id was reused
            "key": record.summary.started_at.timestamp(),
            "t": [round(float(t), 3) for t in arrays.t],
            "segment": [index.get(int(s), -1) for s in arrays.segment_id],
            "segments": [{"number": g.ordinal + 1, "text": g.text, "source": g.source,
                          "outcome": outcome_word(g.outcome), "mistake": g.mistake} for g in segments],
            "frames": cameras,
        }

    @router.get("/{episode_id}/frame/{camera}/{step}")
    def frame(request: Request, episode_id: int, camera: str, step: int) -> Response:
        guard(request)
        try:
            fmt, data = frame_bytes(db, episode_id, camera, step)
        except NotFound as e:
            raise HTTPException(status_code=404, detail=str(e)) from None
        except StorageError as e:
            raise HTTPException(status_code=503, detail=str(e)) from None
        # A stored frame never changes; its URL carries the episode's start time (see `key`).
        return Response(data, media_type=MEDIA.get(fmt, "application/octet-stream"),
                        headers={"Cache-Control": "private, max-age=3600"})

    return router
