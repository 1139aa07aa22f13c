"""Training samples for the high-level policy, built from coaching logs through storage's query API.

One sample is what a real robot and its driver have at one moment (low-resolution camera images,
the proprio state, the task text, the subtasks issued so far, the episode metadata) and the subtask
that should be active then (or `done`). Never the sim's privileged `env_state`.

The history convention matches the autonomous driver (`coaching/autonomy.py`), which passes every
subtask issued so far, the active one last. From each sampled step of segment k two views are made:
- "current": history = segments 0..k, target = segment k (keep going: the last issued is not done);
- "previous": history = segments 0..k-1, target = segment k (switch: the last issued one is done).
Only the images say which applies, so the policy learns when a subtask is finished. The labelling
rules (mistakes, failures, repeats, `done`) are in docs/distill.md.

Decoding JPEG frames is the slow part: it runs behind a tqdm bar and is cached per episode (in
memory, and on disk when `cache_dir` is set).

The episode side is shared with the subgoal model's pairs (`distill/subgoal_data.py`): selecting
episodes (`select_episodes`), splitting them by episode, the frame cache, the per-episode helpers
(`episode_cameras`, `step_period`) and `build_split`, which runs a per-episode builder over the
split and makes the checks both datasets need.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Sequence, TypeVar

import numpy as np

from coaching.high_level import DONE

_CORRECTION_PREFIX = re.compile(r"^\s*(try again|that didn't work|that did not work|again|no)\s*[:,]\s*",
                                re.IGNORECASE)
VIEWS = ("current", "previous")


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


def history_items(texts: Sequence[str], length: int) -> list[str]:
    """The last `length` issued subtasks, normalized, consecutive repeats collapsed, `done` dropped."""
    out: list[str] = []
    for text in texts:
        t = normalize_subtask(text)
        if not t or t == DONE or (out and out[-1] == t):
            continue
        out.append(t)
    return out[-length:] if length > 0 else []


def metadata_prompt(metadata: dict[str, Any] | None) -> str:
    """The metadata prompt component, e.g. "speed normal, quality 5, no mistakes"; "" when absent."""
    if not metadata:
        return ""
    parts = []
    if metadata.get("speed") is not None:
        parts.append(f"speed {metadata['speed']}")
    if metadata.get("quality") is not None:
        parts.append(f"quality {metadata['quality']}")
    if metadata.get("mistake") is not None:
        parts.append("with mistakes" if metadata["mistake"] else "no mistakes")
    return ", ".join(parts)


@dataclass
class DatasetConfig:
    tasks: list[str] | None = None  # task families or parts of task texts; None = all
    status: tuple[str, ...] = ("success",)
    modes: tuple[str, ...] | None = None  # coached | autonomous | mixed; None = all
    min_quality: int | None = None
    sample_hz: float = 2.0
    image_size: int = 64
    history: int = 20  # a whole episode: bussing 8 items is 16 subtasks, and what was done says what is left
    val_fraction: float = 0.2
    seed: int = 0
    done_s: float = 1.0  # the last this-many seconds of a successful episode are labelled `done`
    views: tuple[str, ...] = VIEWS
    cache_dir: str | None = None  # decoded, resized frames per episode (None: in memory only)
    episode_ids: list[int] | None = None  # exactly these episodes (the filters above still apply)


@dataclass
class Sample:
    episode_id: int
    step_index: int
    images: dict[str, np.ndarray]  # camera -> (S, S, 3) uint8
    state: np.ndarray  # float32
    task: str
    history: list[str]  # normalized, oldest first, at most `history` items
    metadata: dict[str, Any]  # speed, quality, mistake (of the episode)
    target: str  # normalized subtask text, or DONE
    view: str  # current | previous


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
        for s in missing:
            have[s] = {cam: resize_image(episode.frame(cam, s), size) for cam in cameras}
        if missing and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(have)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, steps=np.array(keys, dtype=np.int64),
                     **{cam: np.stack([have[k][cam] for k in keys]) for cam in cameras})
            os.replace(tmp, path)
        return {s: have[s] for s in steps}


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


def episode_samples(episode: Any, config: DatasetConfig, cache: FrameCache, skipped: dict[str, int]) -> list[Sample]:
    """The samples of one loaded episode (see the module docstring and docs/distill.md)."""
    steps = episode.steps()
    n = len(steps)
    segments = sorted(episode.segments, key=lambda g: g.ordinal)
    if n == 0 or not segments:
        return []
    cameras = episode_cameras(episode)
    by_id = {g.id: i for i, g in enumerate(segments)}
    # The active segment of each step: the recorded segment id, else the segment's step range.
    active = np.full(n, -1, dtype=np.int64)
    for j, sid in enumerate(steps.segment_id):
        active[j] = by_id.get(int(sid), -1)
    for i, g in enumerate(segments):
        if g.first_step is not None and g.last_step is not None:
            sel = (steps.index >= g.first_step) & (steps.index <= g.last_step) & (active < 0)
            active[sel] = i
    dt = step_period(steps.t)
    dt = dt if dt > 0 else 0.1
    stride = max(1, int(round(1.0 / (config.sample_hz * dt))))
    success = episode.summary.status == "success"
    last_seg_step = max((g.last_step for g in segments if g.last_step is not None), default=int(steps.index[-1]))
    done_from = min(last_seg_step + 1, int(steps.index[-1]) - max(1, int(round(config.done_s / dt))) + 1)
    picks = sorted(set(range(0, n, stride)) | {n - 1})
    meta = {"speed": episode.metadata.get("speed"), "quality": episode.metadata.get("quality"),
            "mistake": bool(episode.metadata.get("mistake", False))}
    texts = [normalize_subtask(g.text) for g in segments]
    planned: list[tuple[int, list[str], str, str]] = []  # (row, history, target, view)
    for j in picks:
        k = int(active[j])
        step = int(steps.index[j])
        if success and step >= done_from:
            last = k if k >= 0 else len(segments) - 1
            planned.append((j, history_items(texts[:last + 1], config.history), DONE, "current"))
            continue
        if k < 0:
            skipped["no_active_subtask"] = skipped.get("no_active_subtask", 0) + 1
            continue
        if segments[k].mistake:
            skipped["mistake"] = skipped.get("mistake", 0) + 1
            continue
        if not texts[k]:
            skipped["empty_text"] = skipped.get("empty_text", 0) + 1
            continue
        for view in config.views:
            issued = texts[:k + 1] if view == "current" else texts[:k]
            planned.append((j, history_items(issued, config.history), texts[k], view))
    if not planned:
        return []
    frames = cache.images(episode, cameras, sorted({int(steps.index[j]) for j, *_ in planned}), config.image_size)
    state = np.asarray(steps.state, dtype=np.float32) if steps.state.dtype != object else None
    out = []
    for j, hist, target, view in planned:
        s = np.asarray(steps.state[j], dtype=np.float32) if state is None else state[j]
        out.append(Sample(episode_id=episode.id, step_index=int(steps.index[j]), images=frames[int(steps.index[j])],
                          state=np.nan_to_num(s), task=episode.summary.task, history=hist, metadata=meta,
                          target=target, view=view))
    return out


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
    per_episode = {eid: make(load_episode(db, eid), cache, skipped)
                   for eid in tqdm(ids, desc="decoding episodes", unit="episode", disable=not progress)}
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
    return Split(train, val, train_ids, val_ids, cams, skipped)


def build_samples(db: Any, config: DatasetConfig, progress: bool = True) -> tuple[list[Sample], list[Sample], DatasetInfo]:
    """(train, val, info): the samples of the selected episodes, split by episode; a one-sentence
    DistillError when there are none or they come from different robots (cameras, state sizes)."""
    split = build_split(db, config, lambda episode, cache, skipped: episode_samples(episode, config, cache, skipped),
                        lambda s: s.images, none_usable="give no usable samples",
                        remedy="select episodes with subtasks that are not all mistakes", same_robot="distill",
                        progress=progress)
    train, val = split.train, split.val
    dims = {s.state.shape for s in train + val}
    if len(dims) != 1:
        raise DistillError(f"The selected episodes have proprio states of different sizes {sorted(dims)}: "
                           "distill episodes recorded with the same robot.")
    info = DatasetInfo(train_episode_ids=split.train_episode_ids, val_episode_ids=split.val_episode_ids,
                       cameras=split.cameras, state_dim=int(train[0].state.shape[0]), num_train=len(train),
                       num_val=len(val), skipped=split.skipped)
    return train, val, info
