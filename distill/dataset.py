"""The episode side of distillation, shared by every model trained from coaching logs.

It owns `DistillError` (something a user can fix, said in one sentence), the normal form of a
subtask text (`normalize_subtask`), selecting episodes by task, status, mode and quality
(`select_episodes`), splitting them by episode (`split_episodes`), the decoded frame cache and
`build_split`, which runs a per-episode builder over the split (the subgoal model's pairs). The
high-level policy replays episodes in `distill/situations.py`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

import numpy as np

log = logging.getLogger("coachlab.distill")

_CORRECTION_PREFIX = re.compile(r"^\s*(try again|that didn't work|that did not work|again|no)\s*[:,]\s*",
                                re.IGNORECASE)


class DistillError(Exception):
    """Something about distillation a user can fix; the message is one sentence saying what to do."""


def normalize_subtask(text: str) -> str:
    """The canonical form of a subtask: no leading correction prefix ("try again: ", "no, " ...),
    whitespace collapsed, lowercase, no trailing full stop."""
    t = " ".join(str(text).split()).lower()
    while True:
        stripped = _CORRECTION_PREFIX.sub("", t, count=1)
        if stripped == t:
            break
        t = stripped
    return t.rstrip(" .!").strip()


@dataclass
class DatasetConfig:
    tasks: list[str] | None = None  # task families or parts of task texts; None = all
    status: tuple[str, ...] = ("success",)
    modes: tuple[str, ...] | None = None  # coached | autonomous | mixed; None = all
    min_quality: int | None = None
    sample_hz: float = 2.0  # moments replayed per second (the detector runs on each)
    image_size: int = 64  # the subgoal model's frames
    val_fraction: float = 0.2
    seed: int = 0
    cache_dir: str | None = None  # decoded, resized frames per episode (None: in memory only)
    episode_ids: list[int] | None = None  # exactly these episodes (the filters above still apply)


@dataclass
class DatasetInfo:
    train_episode_ids: list[int]
    val_episode_ids: list[int]
    cameras: list[str]
    state_dim: int
    num_train: int
    num_val: int
    skipped: dict[str, int] = field(default_factory=dict)  # why steps were not used

    def to_dict(self) -> dict[str, Any]:
        return {"train_episode_ids": self.train_episode_ids, "val_episode_ids": self.val_episode_ids,
                "cameras": self.cameras, "state_dim": self.state_dim, "num_train": self.num_train,
                "num_val": self.num_val, "skipped": self.skipped}


def select_episodes(db: Any, config: DatasetConfig) -> list[int]:
    """Ids (ascending) of the episodes the config selects; a one-sentence DistillError when none."""
    from storage import list_episodes

    ids: set[int] = set()
    for task in (config.tasks or [None]):
        for status in (config.status or (None,)):
            for mode in (config.modes or (None,)):
                for ep in list_episodes(db, task=task, status=status, mode=mode, min_quality=config.min_quality,
                                        limit=None):
                    if ep.num_steps > 0 and ep.num_segments > 0:
                        ids.add(ep.id)
    if config.episode_ids is not None:
        ids &= {int(i) for i in config.episode_ids}
    if not ids:
        what = ", ".join(f"{k} {v}" for k, v in (("tasks", ",".join(config.tasks or []) or None),
                                                  ("status", ",".join(config.status or ()) or None),
                                                  ("modes", ",".join(config.modes or ()) or None),
                                                  ("min quality", config.min_quality)) if v)
        raise DistillError(f"No logged episodes with steps and subtasks match ({what or 'no filter'}) in the "
                           f"database at {db.display_url}: coach some episodes first or widen the selection.")
    return sorted(ids)


def split_episodes(ids: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Train / validation split by episode (at least one of each when there are two or more)."""
    ids = sorted(ids)
    if len(ids) < 2 or val_fraction <= 0:
        return ids, []
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = min(len(ids) - 1, max(1, int(round(val_fraction * len(ids)))))
    val = sorted(ids[i] for i in order[:n_val])
    return [i for i in ids if i not in set(val)], val


def count_damaged(damaged: list[Any], skipped: dict[str, int]) -> list[dict[str, Any]]:
    """Count the damaged stored frames a run met (`storage.errors.DamagedFrame`s, e.g. from
    `EpisodeRecord.damaged`) under `skipped["damaged frame"]`, say each on stderr (one sentence naming
    episode, camera and step) and return them as [{"episode", "camera", "step"}] for the run's report."""
    unique = {(d.episode_id, d.camera, d.step_index): d for d in damaged}
    for d in unique.values():
        log.warning("%s", d)
    if unique:
        skipped["damaged frame"] = skipped.get("damaged frame", 0) + len(unique)
    return [d.to_dict() for _, d in sorted(unique.items())]


class FrameCache:
    """Decoded, resized frames of one episode: step -> {camera: image}, in memory and optionally on disk."""

    def __init__(self, cache_dir: str | None, db_key: str):
        self.dir = Path(cache_dir) if cache_dir else None
        self.db_key = db_key

    def _path(self, episode: Any, size: int) -> Path | None:
        if self.dir is None:
            return None
        s = episode.summary
        return self.dir / f"{self.db_key}-ep{s.id}-{s.num_steps}-{s.started_at.timestamp():.0f}-{size}px.npz"

    def images(self, episode: Any, cameras: list[str], steps: list[int], size: int) -> dict[int, dict[str, np.ndarray]]:
        """{step: {camera: size x size image}} of those `steps` whose frames all decode; a step with a
        damaged frame is left out (noted in `episode.damaged`, never cached, so it is said every run)."""
        from storage.errors import DamagedFrame

        path = self._path(episode, size)
        have: dict[int, dict[str, np.ndarray]] = {}
        if path is not None and path.exists():
            try:
                with np.load(path) as z:
                    idx = z["steps"]
                    for cam in cameras:
                        arr = z[cam]
                        for j, s in enumerate(idx):
                            have.setdefault(int(s), {})[cam] = arr[j]
            except Exception:  # a broken cache file is rebuilt, never trusted
                have = {}
        missing = [s for s in steps if s not in have or any(c not in have[s] for c in cameras)]
        decoded = False
        for s in missing:
            try:
                have[s] = {cam: resize_image(episode.frame(cam, s), size) for cam in cameras}
                decoded = True
            except DamagedFrame:
                have.pop(s, None)
        if decoded and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(have)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, steps=np.array(keys, dtype=np.int64),
                     **{cam: np.stack([have[k][cam] for k in keys]) for cam in cameras})
            os.replace(tmp, path)
        return {s: have[s] for s in steps if s in have}


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """An HxWx3 uint8 image resized to size x size (area interpolation), uint8."""
    import cv2

    image = np.asarray(image)
    if image.shape[0] == size and image.shape[1] == size:
        return image.astype(np.uint8, copy=True)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype(np.uint8)


def _db_key(db: Any) -> str:
    return hashlib.sha1(str(db.display_url).encode()).hexdigest()[:10]


def episode_cameras(episode: Any) -> list[str]:
    """The cameras of a loaded episode that have frames, sorted."""
    return sorted(c for c, k in episode.cameras().items() if k > 0)


def step_period(t: np.ndarray) -> float:
    """The median time between steps in seconds of the step times `t` (N,); 0.1 when there are fewer
    than two steps or a time is not finite. Not guarded against zero or negative: the caller decides."""
    return float(np.median(np.diff(t))) if len(t) > 1 and np.all(np.isfinite(t)) else 0.1


T = TypeVar("T")


@dataclass
class Split(Generic[T]):
    """The items one dataset builds from the selected episodes, split by episode."""

    train: list[T]
    val: list[T]
    train_episode_ids: list[int]
    val_episode_ids: list[int]
    cameras: list[str]  # every item's cameras, sorted
    skipped: dict[str, int]  # why steps or segments were not used, and how often
    damaged_frames: list[dict[str, Any]] = field(default_factory=list)  # {"episode", "camera", "step"} skipped


def build_split(db: Any, selection: DatasetConfig, make: Callable[[Any, FrameCache, dict[str, int]], list[T]],
                images: Callable[[T], dict[str, np.ndarray]], *, none_usable: str, remedy: str, same_robot: str,
                progress: bool = True) -> Split[T]:
    """`make(episode, cache, skipped)` over the episodes `selection` selects (its tasks, statuses,
    modes, minimum quality, episode ids), split into train and validation by episode (its
    `val_fraction`, `seed`), with frames cached in its `cache_dir`. Shared by the high-level policy's
    samples and the subgoal model's pairs.

    One-sentence DistillErrors: no episode selected (`select_episodes`); no training item ("The N
    selected training episodes {none_usable} (skipped: ...): {remedy}."); items whose cameras
    (`images(item)`'s keys) differ ("...: {same_robot} episodes recorded with the same robot.").
    """
    from tqdm import tqdm

    from storage import load_episode

    ids = select_episodes(db, selection)
    train_ids, val_ids = split_episodes(ids, selection.val_fraction, selection.seed)
    cache = FrameCache(selection.cache_dir, _db_key(db))
    skipped: dict[str, int] = {}
    per_episode, damaged = {}, []
    for eid in tqdm(ids, desc="decoding episodes", unit="episode", disable=not progress):
        record = load_episode(db, eid)
        per_episode[eid] = make(record, cache, skipped)
        damaged.extend(record.damaged)
    damaged_frames = count_damaged(damaged, skipped)
    train = [item for e in train_ids for item in per_episode[e]]
    val = [item for e in val_ids for item in per_episode[e]]
    if not train:
        raise DistillError(f"The {len(train_ids)} selected training episodes {none_usable} "
                           f"(skipped: {skipped or 'nothing'}): {remedy}.")
    camera_sets = [images(item) for item in train + val]
    cams = sorted(camera_sets[0])
    if any(sorted(c) != cams for c in camera_sets):
        raise DistillError(f"The selected episodes do not all have the cameras {', '.join(cams)}: "
                           f"{same_robot} episodes recorded with the same robot.")
    return Split(train, val, train_ids, val_ids, cams, skipped, damaged_frames)
