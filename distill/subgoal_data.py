"""Training pairs for the subgoal image model, built from coaching logs through storage's query API.

One pair is (every camera's frame at a moment of a segment, the segment's subtask text) -> every
camera's frame at the segment's last step: what the subtask achieved. Current frames are taken at
the segment's first step (the moment a coach previews) and, for more data, at `sample_hz` through
the first `early_fraction` of the segment, while little has happened yet. Segments marked as
mistakes and failed segments are left out: their end frame is not what the text asks for.
Episodes are selected and split into train and validation by episode with the same rules and the
same frame cache as the high-level policy's dataset (`distill.dataset.build_split`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distill.dataset import DatasetConfig, FrameCache, build_split, episode_cameras, normalize_subtask, step_period


@dataclass
class SubgoalDataConfig:
    tasks: list[str] | None = None  # task families or parts of task texts; None = all
    status: tuple[str, ...] = ("success", "failure", "interrupted")  # segments carry their own outcome
    min_quality: int | None = None
    image_size: int = field(default=96, metadata={"help": "pixels, a multiple of 16 and at least 96"})
    sample_hz: float = 2.0
    early_fraction: float = 0.5
    min_steps: int = 3  # shorter segments show no change worth learning
    val_fraction: float = 0.2
    seed: int = 0
    cache_dir: str | None = None
    episode_ids: list[int] | None = None


@dataclass
class SubgoalPair:
    episode_id: int
    text: str  # normalized subtask
    task: str
    current: dict[str, np.ndarray]  # camera -> (S, S, 3) uint8
    end: dict[str, np.ndarray]
    at_start: bool  # taken at the segment's first step (the preview moment)


@dataclass
class SubgoalDataInfo:
    train_episode_ids: list[int]
    val_episode_ids: list[int]
    cameras: list[str]
    num_train: int
    num_val: int
    skipped: dict[str, int] = field(default_factory=dict)
    damaged_frames: list[dict[str, Any]] = field(default_factory=list)  # {"episode", "camera", "step"}


def episode_pairs(episode: Any, cfg: SubgoalDataConfig, cache: FrameCache, skipped: dict[str, int]) -> list[SubgoalPair]:
    """The pairs of one loaded episode (see the module docstring); segments left out are counted in `skipped`."""
    steps = episode.steps()
    if len(steps) < 2:
        return []
    cameras = episode_cameras(episode)
    dt = step_period(steps.t)
    stride = max(1, int(round(1.0 / (cfg.sample_hz * max(dt, 1e-3)))))
    have = set(int(i) for i in steps.index)
    planned: list[tuple[str, int, int]] = []  # (text, current step, end step); the first is the segment's start
    for seg in sorted(episode.segments, key=lambda g: g.ordinal):
        why = None
        if seg.mistake:
            why = "mistake"
        elif seg.outcome == "failure":
            why = "failed"
        elif seg.first_step is None or seg.last_step is None or seg.last_step - seg.first_step + 1 < cfg.min_steps:
            why = "too_short"
        elif not normalize_subtask(seg.text):
            why = "empty_text"
        elif seg.first_step not in have or seg.last_step not in have:
            why = "steps_missing"
        if why:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        early_end = seg.first_step + int((seg.last_step - seg.first_step) * cfg.early_fraction)
        for step in range(seg.first_step, early_end + 1, stride):
            if step in have:
                planned.append((normalize_subtask(seg.text), step, seg.last_step))
    if not planned:
        return []
    needed = sorted({s for _, a, b in planned for s in (a, b)})
    frames = cache.images(episode, cameras, needed, cfg.image_size)
    starts = {seg.first_step for seg in episode.segments}
    usable = [(text, a, b) for text, a, b in planned if a in frames and b in frames]
    if len(usable) < len(planned):  # a damaged stored frame (noted on the episode; build_split reports it)
        skipped["damaged_frame_pairs"] = skipped.get("damaged_frame_pairs", 0) + len(planned) - len(usable)
    return [SubgoalPair(episode.id, text, episode.summary.task, frames[a], frames[b], a in starts)
            for text, a, b in usable]


def build_pairs(db: Any, cfg: SubgoalDataConfig, progress: bool = True) -> tuple[list[SubgoalPair], list[SubgoalPair], SubgoalDataInfo]:
    """(train, val, info) of the selected episodes, split by episode; a one-sentence DistillError when unusable."""
    selection = DatasetConfig(tasks=cfg.tasks, status=cfg.status, min_quality=cfg.min_quality,
                              episode_ids=cfg.episode_ids, val_fraction=cfg.val_fraction, seed=cfg.seed,
                              cache_dir=cfg.cache_dir)
    split = build_split(db, selection, lambda episode, cache, skipped: episode_pairs(episode, cfg, cache, skipped),
                        lambda p: p.current, none_usable="hold no usable segments",
                        remedy="coach episodes whose subtasks succeed", same_robot="train on", progress=progress)
    info = SubgoalDataInfo(split.train_episode_ids, split.val_episode_ids, split.cameras, len(split.train),
                           len(split.val), split.skipped, split.damaged_frames)
    return split.train, split.val, info
