"""`export_lerobot`: the selected episodes of a database written as one LeRobotDataset folder.

Written into a sibling folder first and renamed into place at the end, so a failed or interrupted
export leaves no half-written dataset under the asked-for name.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from storage.database import Database
from storage.episodes import EpisodeRecord, list_episodes, load_episode
from storage.errors import DamagedFrame
from storage.export import language as lang
from storage.export import layout
from storage.export.plan import ExportConfig, ExportError, Plan, check_out_dir, make_plan
from storage.export.timeline import EpisodeFrames, resample
from storage.export.video import CameraVideo, VideoLibraryMissing, load_av


@dataclass
class ExportReport:
    """What an export did (the JSON `coachlab export` prints)."""

    out: str
    episodes: int
    frames: int
    fps: int
    control_mode: str
    control_mode_rule: str
    language: str
    cameras: list[str]
    held_frames: int
    corrections: int
    size_mb: float
    seconds: float
    episode_ids: list[int]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    damaged_frames: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Files:
    """The data and video files being written, rolled over past their size limits."""

    root: Path
    plan: Plan
    config: ExportConfig
    data_n: int = 0
    data_rows: int = 0
    data_bytes: int = 0
    writer: Any = None
    videos: dict[str, CameraVideo] = field(default_factory=dict)
    video_n: dict[str, int] = field(default_factory=dict)

    def data_writer(self) -> tuple[Any, int, int]:
        import pyarrow.parquet as pq

        if self.writer is not None and self.data_bytes > layout.DATA_FILE_MB * 1e6:
            self.writer.close()
            self.writer, self.data_n, self.data_bytes = None, self.data_n + 1, 0
        if self.writer is None:
            c, f = layout.chunk_file(self.data_n)
            path = self.root / layout.DATA_PATH.format(chunk_index=c, file_index=f)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, layout.data_schema(self.plan.shape, self.config.language))
        return (self.writer, *layout.chunk_file(self.data_n))

    def video(self, cam: str) -> tuple[CameraVideo, int, int]:
        v = self.videos.get(cam)
        if v is not None and v.size_bytes() > layout.VIDEO_FILE_MB * 1e6:
            v.close()
            v, self.video_n[cam] = None, self.video_n[cam] + 1
        n = self.video_n.setdefault(cam, 0)
        if v is None:
            c, f = layout.chunk_file(n)
            h, w = self.plan.shape.image_size or (0, 0)
            v = CameraVideo(self.root / layout.VIDEO_PATH.format(video_key=layout.image_key(cam), chunk_index=c,
                                                                 file_index=f),
                            self.plan.fps, h, w, self.config.vcodec, self.config.crf, self.config.gop)
            self.videos[cam] = v
        return (v, *layout.chunk_file(n))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        for v in self.videos.values():
            v.close()


def _frames_of(record: EpisodeRecord, plan: Plan) -> EpisodeFrames:
    steps = record.steps()
    try:
        return resample(steps.t, steps.state, steps.action, steps.segment_id, steps.index, plan.fps)
    except ValueError as err:
        raise ExportError(f"Episode {record.id} cannot be exported: {err}.") from None


def _images(record: EpisodeRecord, frames: EpisodeFrames, cameras: list[str]) -> tuple[dict[str, list], np.ndarray]:
    """Decoded frames per camera for the frames whose images all read, and the mask of dropped ones."""
    images: dict[str, list] = {c: [] for c in cameras}
    dropped = np.zeros(len(frames), dtype=bool)
    cache: dict[tuple[str, int], np.ndarray] = {}  # a step shown twice (up-sampling) is decoded once
    for k, step in enumerate(frames.step_index):
        row = {}
        for cam in cameras:
            key = (cam, int(step))
            try:
                row[cam] = cache[key] if key in cache else record.frame(cam, int(step))
            except DamagedFrame:
                dropped[k] = True
                break
            cache = {key: row[cam]} if len(cache) > 8 else {**cache, key: row[cam]}
        if not dropped[k]:
            for cam in cameras:
                images[cam].append(row[cam])
    return images, dropped


def export_lerobot(db: Database, out: str | Path, config: ExportConfig | None = None,
                   filters: dict[str, Any] | None = None, progress: bool = True) -> ExportReport:
    """Write the episodes `filters` select (the keyword arguments of `list_episodes`, no limit by
    default) as a LeRobotDataset at `out`. Raises ExportError (one sentence) when the filters select
    nothing, `out` is not a new or empty writable folder, or the video library is missing. Damaged
    frames are skipped and listed in the report's `damaged_frames`."""
    start = time.perf_counter()
    config = (config or ExportConfig()).checked()
    filters = {"limit": None, **(filters or {})}
    out = Path(out)
    check_out_dir(out)
    try:
        load_av()
        import pyarrow  # noqa: F401
    except VideoLibraryMissing as err:
        raise ExportError(str(err)) from None
    except ImportError:
        raise ExportError("Exporting needs pyarrow, which is not installed: run ./install.sh or pip install pyarrow.") from None
    summaries = list_episodes(db, **filters)
    if not summaries:
        asked = ", ".join(f"{k}={v}" for k, v in filters.items() if v is not None) or "no filters"
        raise ExportError(f"No episode in {db.display_url} matches {asked}: "
                          "list what there is with coachlab episodes and loosen the filters.")
    records = {s.id: load_episode(db, s.id) for s in summaries}
    plan = make_plan(summaries, {i: r.robot for i, r in records.items()}, config, filters.get("status"))

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        report = _write(staging, db, plan, config, [records[i] for i in plan.episode_ids], progress)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()  # checked empty above
    os.replace(staging, out)
    report.out, report.seconds = str(out), round(time.perf_counter() - start, 2)
    return report


def _write(root: Path, db: Database, plan: Plan, config: ExportConfig, records: list[EpisodeRecord],
           progress: bool) -> ExportReport:
    import pyarrow as pa
    from tqdm import tqdm

    from storage.errors import StorageError

    shape, cams = plan.shape, plan.shape.cameras
    try:
        root.mkdir(parents=True)
    except OSError as err:
        raise ExportError(f"Cannot write to {root.parent} ({err.strerror}): choose a folder you can write to "
                          "with --out.") from None
    files = _Files(root, plan, config)
    tasks: dict[str, int] = {}
    subtasks = lang.SubtaskIndex()
    stats = {k: layout.RunningStats() for k in ("observation.state", "action", "timestamp", "frame_index",
                                                 "episode_index", "index", "task_index")}
    img_stats = {c: layout.RunningStats() for c in cams}
    episode_rows: list[dict[str, Any]] = []
    segment_rows: list[dict[str, Any]] = []
    damaged: list[dict[str, Any]] = []
    total = held_total = corrections = 0
    bar = tqdm(records, desc="exporting", unit="episode", disable=not progress)
    try:
        for ep_index, record in enumerate(bar):
            frames = _frames_of(record, plan)
            images, dropped = _images(record, frames, cams)
            damaged += [d.to_dict() for d in record.damaged]
            frames = frames.without(dropped)
            n = len(frames)
            if n == 0:
                continue  # every frame damaged: nothing to show (listed in damaged_frames)
            ts = (np.arange(n) / plan.fps).astype(np.float32)
            task_index = tasks.setdefault(record.summary.task, len(tasks))
            segs = lang.spans(record.segments, frames.segment_id)
            columns: dict[str, Any] = {
                "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(frames.state.ravel()),
                                                                       len(shape.state_names)),
                "action": pa.FixedSizeListArray.from_arrays(pa.array(frames.action.ravel()), len(shape.action_names)),
                "action_is_held": pa.array(frames.held), "timestamp": pa.array(ts),
                "frame_index": pa.array(np.arange(n, dtype=np.int64)),
                "episode_index": pa.array(np.full(n, ep_index, dtype=np.int64)),
                "index": pa.array(np.arange(total, total + n, dtype=np.int64)),
                "task_index": pa.array(np.full(n, task_index, dtype=np.int64))}
            if config.language == "index":
                columns["subtask_index"] = pa.array(subtasks.frames(frames.segment_id,
                                                                    {g.id: g.text for g in record.segments}))
            else:
                persistent = lang.persistent_rows(segs, ts)
                columns[lang.PERSISTENT] = pa.array([persistent] * n, lang.persistent_type())
                columns[lang.EVENTS] = pa.array(lang.event_rows(segs, n), lang.events_type())
            table = pa.table(columns, schema=layout.data_schema(shape, config.language))
            writer, d_chunk, d_file = files.data_writer()
            writer.write_table(table)
            files.data_bytes += table.nbytes
            ep = {"episode_index": ep_index, "tasks": [record.summary.task], "length": n,
                  "data/chunk_index": d_chunk, "data/file_index": d_file,
                  "dataset_from_index": total, "dataset_to_index": total + n,
                  "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            for cam in cams:
                video, v_chunk, v_file = files.video(cam)
                first = video.frames
                for img in images[cam]:
                    video.add(img)
                key = layout.image_key(cam)
                ep.update({f"videos/{key}/chunk_index": v_chunk, f"videos/{key}/file_index": v_file,
                           f"videos/{key}/from_timestamp": first / plan.fps,
                           f"videos/{key}/to_timestamp": video.frames / plan.fps})
                sample = np.stack(images[cam][:: max(1, n // 20)])[:, ::8, ::8].reshape(-1, 3) / 255.0
                img_stats[cam].add(sample)
            ep.update(_coachlab_tags(record, segs))
            episode_rows.append(ep)
            segment_rows += [{"episode_index": ep_index, "coachlab/episode_id": record.id, "ordinal": s.ordinal,
                              "subtask": s.text, "source": s.source, "outcome": s.outcome, "mistake": s.mistake,
                              "from_frame": s.first_frame, "to_frame": s.last_frame,
                              "from_timestamp": None if s.first_frame is None else float(ts[s.first_frame])}
                             for s in segs]
            for key, values in (("observation.state", frames.state), ("action", frames.action), ("timestamp", ts),
                                ("frame_index", columns["frame_index"].to_numpy()),
                                ("episode_index", columns["episode_index"].to_numpy()),
                                ("index", columns["index"].to_numpy()), ("task_index", columns["task_index"].to_numpy())):
                stats[key].add(values)
            total += n
            held_total += int(frames.held.sum())
            corrections += sum(1 for s in segs if s.source == "correction" and s.first_frame is not None)
    except OSError as err:
        raise ExportError(f"Writing the export under {root.parent} failed ({err.strerror or err}): "
                          "free some space or choose another --out.") from None
    except StorageError:
        raise
    finally:
        bar.close()
        files.close()
    if not episode_rows:
        raise ExportError("Every frame of the selected episodes is damaged, so nothing could be exported: "
                          "re-record them.")
    layout.write_rows(root / layout.EPISODES_PATH, episode_rows)
    layout.write_rows(root / "meta/coachlab_segments.parquet", segment_rows)
    layout.write_indexed(root / "meta/tasks.parquet", list(tasks), "task", "task_index")
    if config.language == "index":
        layout.write_indexed(root / "meta/subtasks.parquet", list(subtasks.index), "subtask", "subtask_index")
    all_stats = {k: v.result() for k, v in stats.items()}
    all_stats.update({layout.image_key(c): v.result(image=True) for c, v in img_stats.items()})
    layout.write_json(root / "meta/stats.json", all_stats)
    extra = {"exported_at": datetime.now(timezone.utc).isoformat(), "database": db.display_url,
             "control_mode": plan.control_mode, "control_mode_rule": plan.control_mode_rule,
             "language": config.language, "held_frames": held_total, "damaged_frames": damaged,
             "resampling": "frame k shows the latest step recorded at or before k/fps; held steps repeat "
                           "the last action sent and are marked in action_is_held"}
    layout.write_json(root / "meta/info.json", layout.info(shape, plan.fps, config.language, config.vcodec,
                                                           {"episodes": len(episode_rows), "frames": total,
                                                            "tasks": len(tasks)}, extra))
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return ExportReport(out=str(root), episodes=len(episode_rows), frames=total, fps=plan.fps,
                        control_mode=plan.control_mode, control_mode_rule=plan.control_mode_rule,
                        language=config.language, cameras=cams, held_frames=held_total, corrections=corrections,
                        size_mb=round(size / 1e6, 3), seconds=0.0, episode_ids=[r.id for r in records],
                        skipped=plan.skipped, damaged_frames=damaged)


def _coachlab_tags(record: EpisodeRecord, segs: list[lang.SegmentSpan]) -> dict[str, Any]:
    """The episode's coachlab tags as flat `coachlab/...` columns of meta/episodes."""
    s, meta = record.summary, record.metadata
    mistake = meta.get("mistake")
    return {"coachlab/episode_id": s.id, "coachlab/status": s.status, "coachlab/mode": s.mode,
            "coachlab/quality": s.quality, "coachlab/speed": s.speed, "coachlab/control_mode": s.control_mode,
            "coachlab/seed": s.seed, "coachlab/task_family": s.task_family, "coachlab/user": s.user,
            "coachlab/started_at": s.started_at.isoformat(), "coachlab/notes": s.notes,
            "coachlab/mistake": None if mistake is None else bool(mistake),
            "coachlab/segments_marked_mistake": sum(1 for g in segs if g.mistake),
            "coachlab/corrections": sum(1 for g in segs if g.source == "correction"),
            "coachlab/vla_hello": json.dumps(record.vla_hello) if record.vla_hello is not None else None,
            "coachlab/metadata": json.dumps(meta, default=str)}
