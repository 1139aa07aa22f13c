"""LeRobot's dataset layout, codebase v3.0: where each file goes and what meta/info.json, the tasks,
subtasks and episodes tables and meta/stats.json hold (written with pyarrow; nothing here imports
LeRobot).

    meta/info.json                 features (dtype, shape, names; video info), fps, totals, paths
    meta/tasks.parquet             index: task text, column task_index
    meta/subtasks.parquet          index: subtask text, column subtask_index   (language form `index`)
    meta/stats.json                per feature min/max/mean/std/count and q01..q99 (images per channel)
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks, where its rows and
                                   video frames are, and coachlab's own tags under `coachlab/...`
    meta/coachlab_segments.parquet one row per segment: subtask, source, outcome, mistake, frames
    data/chunk-000/file-000.parquet            one row per frame
    videos/observation.images.CAM/chunk-000/file-000.mp4
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.export.language import EVENTS, PERSISTENT, events_type, persistent_type

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk folder
DATA_FILE_MB = 100  # a new data file past this many MB, as LeRobot's writers do
VIDEO_FILE_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def chunk_file(n: int) -> tuple[int, int]:
    """(chunk index, file index) of the n-th file of a kind."""
    return n // CHUNKS_SIZE, n % CHUNKS_SIZE


def image_key(camera: str) -> str:
    return f"observation.images.{camera}"


def features(shape: Any, fps: int, language: str, vcodec: str) -> dict[str, dict[str, Any]]:
    """info.json's `features` for a robot shape (plan.RobotShape)."""
    feats: dict[str, dict[str, Any]] = {}
    for cam in shape.cameras:
        h, w = shape.image_size or (0, 0)
        feats[image_key(cam)] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                                 "info": {"video.height": h, "video.width": w, "video.codec": _codec_name(vcodec),
                                          "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                                          "video.fps": fps, "video.channels": 3, "has_audio": False}}
    feats["observation.state"] = {"dtype": "float32", "shape": [len(shape.state_names)], "names": shape.state_names}
    feats["action"] = {"dtype": "float32", "shape": [len(shape.action_names)], "names": shape.action_names}
    feats["action_is_held"] = {"dtype": "bool", "shape": [1], "names": None}
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                       ("index", "int64"), ("task_index", "int64")):
        feats[key] = {"dtype": dtype, "shape": [1], "names": None}
    if language == "index":
        feats["subtask_index"] = {"dtype": "int64", "shape": [1], "names": None}
    else:
        feats[PERSISTENT] = {"dtype": "language", "shape": [1], "names": None}
        feats[EVENTS] = {"dtype": "language", "shape": [1], "names": None}
    return feats


def _codec_name(vcodec: str) -> str:
    return {"libx264": "h264", "libx265": "hevc", "libsvtav1": "av1", "libvpx-vp9": "vp9"}.get(vcodec, vcodec)


def data_schema(shape: Any, language: str) -> pa.Schema:
    """The data parquet's arrow schema: vectors as fixed-size lists, as HF datasets writes them."""
    fields = [pa.field("observation.state", pa.list_(pa.float32(), len(shape.state_names))),
              pa.field("action", pa.list_(pa.float32(), len(shape.action_names))),
              pa.field("action_is_held", pa.bool_()), pa.field("timestamp", pa.float32()),
              pa.field("frame_index", pa.int64()), pa.field("episode_index", pa.int64()),
              pa.field("index", pa.int64()), pa.field("task_index", pa.int64())]
    if language == "index":
        fields.append(pa.field("subtask_index", pa.int64()))
    else:
        fields += [pa.field(PERSISTENT, persistent_type()), pa.field(EVENTS, events_type())]
    return pa.schema(fields)


def info(shape: Any, fps: int, language: str, vcodec: str, totals: dict[str, int], extra: dict[str, Any]) -> dict:
    """meta/info.json. `totals`: episodes, frames, tasks. `extra`: coachlab's note on how it was made."""
    return {"codebase_version": CODEBASE_VERSION, "robot_type": shape.name,
            "total_episodes": totals["episodes"], "total_frames": totals["frames"], "total_tasks": totals["tasks"],
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB,
            "fps": fps, "splits": {"train": f"0:{totals['episodes']}"}, "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if shape.cameras else None,
            "features": features(shape, fps, language, vcodec), "coachlab": extra}


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=4, ensure_ascii=False))


def write_indexed(path: Path, texts: list[str], index_name: str, column: str) -> None:
    """A table LeRobot reads with pandas as `DataFrame({column: 0..n-1}, index=texts)`."""
    table = pa.table({index_name: pa.array(texts, pa.string()), column: pa.array(range(len(texts)), pa.int64())})
    pandas_meta = {"index_columns": [index_name], "column_indexes": [], "pandas_version": "2.2.0",
                   "columns": [{"name": index_name, "field_name": index_name, "pandas_type": "unicode",
                                "numpy_type": "object", "metadata": None},
                               {"name": column, "field_name": column, "pandas_type": "int64",
                                "numpy_type": "int64", "metadata": None}], "creator": {"library": "pyarrow"}}
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """A list of flat dicts as one parquet table (column types inferred; None allowed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


class RunningStats:
    """min/max/mean/std/count and quantiles of one feature over every exported frame.

    Vectors (N x D) are kept whole (state and action are small); camera frames are added as per-channel
    values in [0, 1] of a subsample of their pixels (LeRobot's stats are per channel, shape 3 x 1 x 1)."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []

    def add(self, values: np.ndarray) -> None:
        self.parts.append(np.asarray(values, dtype=np.float64).reshape(len(values), -1))

    def result(self, image: bool = False) -> dict[str, list]:
        x = np.concatenate(self.parts) if self.parts else np.zeros((0, 1))
        if len(x) == 0:
            return {}
        out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
        out.update({f"q{int(q * 100):02d}": np.quantile(x, q, axis=0) for q in QUANTILES})
        shaped = {k: (v.reshape(3, 1, 1) if image else v).tolist() for k, v in out.items()}
        shaped["count"] = [int(len(x))]
        return shaped
