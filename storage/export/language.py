"""The subtask language of an exported episode, in the two forms LeRobot reads.

- `columns` (current LeRobot, its language annotation format): every frame carries the episode's
  `language_persistent` list, one row per subtask {role "assistant", style "subtask", content, the
  timestamp of the first frame it was active, camera None, tool_calls None}; a subtask is active from
  its timestamp until the next one's. A correction (a segment a person sent to fix the robot) is also
  an `interjection` event {role "user", style "interjection", content} in `language_events` of the
  frame where it starts; other frames carry an empty list. Two subtasks starting on one frame (a
  resampling to fewer fps) keep the later one, as LeRobot refuses two active rows at one time.
- `index` (LeRobot 0.4): per frame `subtask_index` into meta/subtasks.parquet (the subtask text is
  the table's index); frames before the first subtask point at the empty text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

PERSISTENT, EVENTS = "language_persistent", "language_events"


def persistent_type() -> pa.DataType:
    return pa.list_(pa.struct([pa.field("role", pa.string(), nullable=False), pa.field("content", pa.string()),
                               pa.field("style", pa.string()), pa.field("timestamp", pa.float32(), nullable=False),
                               pa.field("camera", pa.string()), pa.field("tool_calls", pa.list_(pa.string()))]))


def events_type() -> pa.DataType:
    return pa.list_(pa.struct([pa.field("role", pa.string(), nullable=False), pa.field("content", pa.string()),
                               pa.field("style", pa.string()), pa.field("camera", pa.string()),
                               pa.field("tool_calls", pa.list_(pa.string()))]))


@dataclass
class SegmentSpan:
    """A segment as exported: where it starts on the frame clock (None: in no frame)."""

    segment_id: int
    ordinal: int
    text: str
    source: str
    outcome: str | None
    mistake: bool
    first_frame: int | None
    last_frame: int | None


def spans(segments: list[Any], frame_segment: np.ndarray) -> list[SegmentSpan]:
    """Each segment's first and last frame given the segment id active at each frame (N)."""
    out = []
    for g in sorted(segments, key=lambda g: g.ordinal):
        rows = np.flatnonzero(frame_segment == g.id)
        out.append(SegmentSpan(g.id, g.ordinal, g.text, g.source, g.outcome, bool(g.mistake),
                               int(rows[0]) if len(rows) else None, int(rows[-1]) if len(rows) else None))
    return out


def persistent_rows(segs: list[SegmentSpan], timestamps: np.ndarray) -> list[dict[str, Any]]:
    """The episode's subtask rows (sorted by time, one per start frame)."""
    by_frame: dict[int, SegmentSpan] = {}
    for s in segs:
        if s.first_frame is not None:
            by_frame[s.first_frame] = s  # ordinal order: the later one wins a shared frame
    return [{"role": "assistant", "content": s.text, "style": "subtask", "timestamp": float(timestamps[f]),
             "camera": None, "tool_calls": None} for f, s in sorted(by_frame.items())]


def event_rows(segs: list[SegmentSpan], n: int) -> list[list[dict[str, Any]]]:
    """Per frame (n lists): the interjection rows of corrections starting on that frame."""
    events: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for s in segs:
        if s.source == "correction" and s.first_frame is not None:
            events[s.first_frame].append({"role": "user", "content": s.text, "style": "interjection",
                                          "camera": None, "tool_calls": None})
    return events


class SubtaskIndex:
    """Subtask text -> index, in order of first use; index 0 is the empty text (no subtask yet)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {"": 0}

    def of(self, text: str) -> int:
        return self.index.setdefault(text, len(self.index))

    def frames(self, frame_segment: np.ndarray, texts: dict[int, str]) -> np.ndarray:
        return np.array([0 if sid < 0 else self.of(texts.get(int(sid), "")) for sid in frame_segment], dtype=np.int64)
