"""Detections of stored episodes: recomputed from the stored frames, cached on disk.

It owns the link between logs and perception. Nothing about detections is stored in the database,
so every database, old ones included, works unchanged: `episode_detections` decodes an episode's
frames, runs a `Detector` on each sampled step and keeps the result in a JSON file keyed by the
episode, the database and the detector (`detector_identity`), so a second distillation run reads
the file instead of running the detector again. A damaged stored frame leaves its step out; it is
noted on the episode record (`EpisodeRecord.damaged`, kept in the cache file too) so the run counts
it and names episode, camera and step.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from coaching.detector import Detection, Detector
from coaching.perception import as_json
from storage.errors import StorageError


def detector_identity(detector: Detector) -> str:
    """A short name that changes when the detector's weights do: the hash of a learned detector's
    weights file, else the detector's class name."""
    directory = getattr(detector, "directory", None)
    weights = Path(directory) / "model.safetensors" if directory else None
    if weights is not None and weights.is_file():
        return "learned-" + hashlib.sha1(weights.read_bytes()).hexdigest()[:12]
    return type(detector).__name__


def episode_detections(episode, detector: Detector, cache_dir: str | os.PathLike | None, every: int = 1
                       ) -> dict[int, list[Detection]]:
    """{step index: detections on that step's frames} for every `every`-th stored step of `episode`
    (a `storage.episodes.EpisodeRecord`), read from `cache_dir` when an earlier run cached them.

    Masks are not kept. A step with a missing or damaged frame is absent from the result; damaged
    ones are noted in `episode.damaged` (from the cache as well), for the caller to count and report.
    """
    path = None
    if cache_dir is not None:
        db_key = hashlib.sha1(episode.db.display_url.encode()).hexdigest()[:10]
        path = Path(cache_dir) / "detections" / detector_identity(detector) / f"{db_key}-{episode.id}-{every}.json"
        if path.is_file():
            try:
                cached = json.loads(path.read_text())
                found = {int(k): [_detection(d) for d in v] for k, v in cached["steps"].items()}
                for camera, index in cached["damaged"]:
                    episode.note_damaged(camera, int(index))
                return found
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged cache file is recomputed
    cameras = list(episode.cameras())
    steps = episode.steps()
    out: dict[int, list[Detection]] = {}
    for index in steps.index[::every]:
        try:
            images = {cam: episode.frame(cam, int(index)) for cam in cameras}
        except StorageError:  # a missing or damaged frame (noted on the episode): that step has no detections
            continue
        out[int(index)] = [Detection(d.label, d.camera, d.box, d.score) for d in detector.detect(images)]
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"steps": {str(k): [as_json(d) for d in v] for k, v in out.items()},
                                       "damaged": [[d.camera, d.step_index] for d in episode.damaged]}))
            os.replace(tmp, path)
        except OSError:
            pass  # no cache (read-only or full disk): the detections are still returned
    return out


def _detection(d: dict[str, Any]) -> Detection:
    return Detection(d["label"], d["camera"], tuple(d["box"]), float(d["score"]))
