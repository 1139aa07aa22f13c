"""The episode recorder: the control loop hands it steps and never waits on the database.

`record_step` only copies the inputs and queues them for the writer thread (storage/writer.py),
which encodes frames and commits in small batches; each step is filed under the segment id the
loop passes with it, so a step always belongs to the segment that produced it. A full queue raises
`RecorderOverflow` at once (the step is refused, loudly, never dropped in silence), naming the
database's own failure (a full disk, say) when that is why the queue filled; a writer that gave up
on the database makes the next call raise `RecorderFailed`. The next `start_episode` tries again
(an app keeps one recorder for its life): once space is back, recording works without a restart,
and an episode whose final row could not be written then is finished first. Episode, segment and event
rows are written synchronously by the calling thread, because they are rare and the UI wants their ids.

Crash safety: a SIGKILL loses at most the batch being assembled (about `commit_every_s` of steps);
the next `open_database` marks the episode `interrupted` (see recovery.py).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from storage.database import Database
from storage.errors import NotFound, RecorderFailed, RecorderOverflow, StorageError
from storage.frames import FORMATS, check_image, encode_image
from storage.models import FINAL_STATUSES, MODES, SOURCES, Episode, Event, Segment, Step, SubgoalImage, utcnow
from storage.rows import get_or_create_task, jsonable, split_metadata
from storage.writer import StepItem, Writer, remedy

log = logging.getLogger("coachlab.storage")


@dataclass
class RecorderConfig:
    """How the recorder buffers and encodes.

    `max_queue_steps` bounds memory: each queued step holds a copy of its camera images (3 x
    320x240 RGB is 0.7 MB, so 200 steps is about 140 MB). `copy_images=False` skips that copy
    (saving ~0.1 ms per step) but then the caller must never reuse or modify an image array after
    handing it over. State and action are always copied (as float64 bytes).
    """

    max_queue_steps: int = 200
    image_format: str = "jpeg"  # "jpeg" | "png" (lossless)
    jpeg_quality: int = 90
    png_compression: int = 1  # 0-9; 1 is fast and nearly as small as 9 for camera images
    commit_every_s: float = 0.25
    heartbeat_every_s: float = 5.0
    copy_images: bool = True
    retry_for_s: float = 10.0  # keep retrying a failing commit this long before giving up
    flush_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.image_format not in FORMATS:
            raise ValueError(f"image_format must be one of {', '.join(FORMATS)}, not '{self.image_format}'.")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be between 1 and 100.")
        if self.max_queue_steps < 1:
            raise ValueError("max_queue_steps must be at least 1.")
        if self.commit_every_s <= 0 or self.heartbeat_every_s <= 0:
            raise ValueError("commit_every_s and heartbeat_every_s must be positive.")


@dataclass
class RecorderStats:
    """Counters since the recorder was made. `dropped`: steps refused because the queue was full;
    `lost`: steps accepted but not saved because the writer failed. Both should stay 0."""

    queued: int = 0
    written: int = 0
    frames_written: int = 0
    dropped: int = 0
    lost: int = 0
    queue_depth: int = 0
    max_queue_depth: int = 0
    writer_errors: int = 0
    last_error: str | None = None  # the last error ever met (it may have passed since)
    failing: str | None = None  # what stops commits now (None: recording works), e.g. a full disk

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_f8_bytes(x: Any) -> bytes:
    return np.ascontiguousarray(x, dtype="<f8").tobytes()


class Recorder:
    """Records episodes into `db`. One episode at a time; call `close()` (or use `with`)."""

    def __init__(self, db: Database, config: RecorderConfig | None = None) -> None:
        self.db = db
        self.config = config or RecorderConfig()
        self._lock = threading.Lock()  # guards the fields below; held only for a few microseconds
        self._episode_id: int | None = None
        self._next_index = 0
        self._next_ordinal = 0
        self._segment_ids: set[int] = set()  # the current episode's segments: what record_step accepts
        self._stats = RecorderStats()
        self._closed = False
        self._unfinished: tuple[int, dict[str, Any]] | None = None  # (episode, final row) a failed end could not write
        self._host = socket.gethostname()
        self._writer = Writer(db, self.config, self._stats, lambda: self._episode_id)

    # ----- the control loop's side ---------------------------------------------------------

    @property
    def episode_id(self) -> int | None:
        return self._episode_id

    @property
    def stats(self) -> RecorderStats:
        snap = RecorderStats(**asdict(self._stats))
        snap.queue_depth = self._writer.depth()
        snap.failing = self._writer.failing or self._writer.failure
        return snap

    def record_step(self, t: float, state: np.ndarray, action: np.ndarray | None, images: dict[str, np.ndarray],
                    *, segment_id: int | None, wait_s: float = 0.0) -> int:
        """Queue one step and return its index at once; never touches the database.

        `segment_id` is the segment that produced the step (an id start_segment returned in this
        episode; it may have ended since), or None when no subtask was active: the step is filed
        under it. Raises RecorderOverflow if the queue is full (this step is not recorded) and
        RecorderFailed if the writer thread has given up on the database. `wait_s` > 0 waits that
        long for room instead: only for loops on a simulated clock, which may run faster than the
        writer and lose nothing by waiting (a real-time loop must never wait on the database).
        """
        if self._writer.failure is not None:
            raise RecorderFailed(self._writer.failure)
        episode_id = self._episode_id
        if episode_id is None:
            raise StorageError("record_step was called with no episode being recorded: call start_episode first.")
        if segment_id is not None and segment_id not in self._segment_ids:
            raise ValueError(f"Segment {segment_id} is not a segment of episode {episode_id}: pass the id "
                             f"start_segment returned for the subtask that produced the step, or None.")
        state_b = _as_f8_bytes(state)
        action_b = None if action is None else _as_f8_bytes(action)
        frames = {}
        for name, image in images.items():
            check_image(name, image)
            frames[name] = image.copy() if self.config.copy_images else image
        with self._lock:
            index = self._next_index
            item = StepItem(episode_id, index, float(t), state_b, action_b, frames,
                            None if segment_id is None else int(segment_id))
            try:
                self._writer.put(item, wait_s)
            except queue.Full:
                self._stats.dropped += 1
                cause = self._writer.failing or self._writer.failure
                why = (f"the database at {self.db.display_url} cannot be written ({cause}): {remedy(cause)}, then "
                       f"end the episode and start a new one" if cause else
                       f"the database at {self.db.display_url} is too slow to keep up; end the episode, then lower "
                       f"the camera rate or resolution, use a faster disk or database server, or raise max_queue_steps")
                message = (f"The recorder's queue is full ({self.config.max_queue_steps} steps waiting), so step "
                           f"{index} at t={float(t):.3f} s of episode {episode_id} was NOT recorded: {why}.")
                log.error(message)
                raise RecorderOverflow(message) from None
            self._next_index = index + 1
            self._stats.queued += 1
            depth = self._writer.depth()
            if depth > self._stats.max_queue_depth:
                self._stats.max_queue_depth = depth
        return index

    # ----- rows written at once --------------------------------------------------------------

    def start_episode(self, task: str, robot: dict[str, Any] | Any, mode: str = "coached", user: str | None = None,
                      seed: int | None = None, metadata: dict[str, Any] | None = None, task_family: str | None = None,
                      vla_hello: dict[str, Any] | None = None, policy_checkpoint_id: int | None = None) -> int:
        """Write a new `running` episode and make it the one steps go to; returns its id.

        `robot` is the robot's description (a dict, or anything with `to_dict()`); `metadata` may
        hold speed, quality (1-5), control_mode, notes and any other keys (kept verbatim);
        `task_family` is the sim's task family (`bussing`, ...) when the sim runs the episode.
        """
        if self._closed:
            raise StorageError("This recorder is closed: make a new Recorder.")
        if self._episode_id is not None:
            raise StorageError(f"Episode {self._episode_id} is still being recorded: end it with end_episode "
                               f"before starting another.")
        self._finish_unfinished()  # an end the database refused earlier (a full disk), written now
        self._writer.clear_failure()  # try again: a commit that still fails gives up again, saying why
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not '{mode}'.")
        if not isinstance(task, str) or not task.strip():
            raise ValueError("The task text must be a non-empty string.")
        columns, extra = split_metadata(metadata or {})
        robot_dict = robot.to_dict() if hasattr(robot, "to_dict") else dict(robot or {})
        now = utcnow()
        with self.db.session() as s:
            task_id = get_or_create_task(s, task)
            ep = Episode(task_id=task_id, task_family=task_family, robot=jsonable(robot_dict), mode=mode,
                         user_name=user, seed=None if seed is None else int(seed), started_at=now,
                         status="running", extra=extra, vla_hello=None if vla_hello is None else jsonable(vla_hello),
                         policy_checkpoint_id=policy_checkpoint_id, num_steps=0, writer_pid=os.getpid(),
                         writer_host=self._host, heartbeat_at=now, **columns)
            s.add(ep)
            s.flush()
            episode_id = ep.id
        with self._lock:
            self._episode_id, self._next_index, self._next_ordinal = episode_id, 0, 0
            self._segment_ids = set()
        return episode_id

    def start_segment(self, text: str, source: str, issued_at: float, user: str | None = None, mistake: bool = False,
                      subgoal_images: dict[str, np.ndarray] | None = None, subgoal_sent: bool = False,
                      info: dict[str, Any] | None = None) -> int:
        """Write a new segment (a subtask) of the current episode; returns its id, what record_step takes.

        Its first and last step are filled in by the writer as steps filed under it are committed.
        `subgoal_images` are the previewed images (camera -> RGB), stored whether sent or not.
        """
        episode_id = self._require_episode("start_segment")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not '{source}'.")
        if not isinstance(text, str):
            raise ValueError("The subtask text must be a string.")
        encoded = {}
        for cam, image in (subgoal_images or {}).items():
            check_image(cam, image)
            encoded[cam] = encode_image(image, self.config.image_format, self.config.jpeg_quality,
                                        self.config.png_compression)
        with self._lock:
            ordinal = self._next_ordinal
            self._next_ordinal += 1
        with self.db.session() as s:
            seg = Segment(episode_id=episode_id, ordinal=ordinal, text=text, source=source, user_name=user,
                          issued_at=float(issued_at), issued_wall=utcnow(), mistake=bool(mistake),
                          subgoal_sent=bool(subgoal_sent), info=None if info is None else jsonable(info))
            s.add(seg)
            s.flush()
            for cam, data in encoded.items():
                s.add(SubgoalImage(segment_id=seg.id, camera=cam, format=self.config.image_format, data=data))
            segment_id = seg.id
        with self._lock:
            if self._episode_id == episode_id:
                self._segment_ids.add(segment_id)
        return segment_id

    def end_segment(self, segment_id: int, outcome: str | None, info: dict[str, Any] | None = None) -> None:
        """Write the segment's outcome (e.g. success, failure; None = not judged). `info` is merged into the
        segment's info. Steps it produced may still be recorded under it afterwards."""
        with self.db.session() as s:
            seg = s.get(Segment, segment_id)
            if seg is None:
                raise NotFound(f"There is no segment {segment_id} in the database at {self.db.display_url}.")
            seg.outcome = outcome
            if info:
                seg.info = {**(seg.info or {}), **jsonable(info)}

    def event(self, kind: str, t: float | None, user: str | None = None, data: dict[str, Any] | None = None,
              episode_id: int | None = None) -> int:
        """Write an event (pause, resume, stop, takeover, ...) of the current (or given) episode; returns its id."""
        episode_id = episode_id if episode_id is not None else self._require_episode("event")
        if not kind or len(kind) > 32:
            raise ValueError("An event kind must be 1 to 32 characters, like 'pause' or 'takeover'.")
        with self.db.session() as s:
            ev = Event(episode_id=episode_id, kind=kind, t=None if t is None else float(t), user_name=user,
                       data=None if data is None else jsonable(data), created_at=utcnow())
            s.add(ev)
            s.flush()
            return ev.id

    def end_episode(self, status: str, metadata_updates: dict[str, Any] | None = None, mode: str | None = None) -> int:
        """Wait until every queued step is committed, then write the final status and metadata.

        `mode` changes the episode's mode, e.g. to `mixed` once a person took over an autonomous run.
        Returns the episode id. Raises RecorderFailed (after still writing the status) if some
        steps could not be saved.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"An episode ends as one of {', '.join(FINAL_STATUSES)}, not '{status}'.")
        if mode is not None and mode not in MODES:
            raise ValueError(f"An episode's mode is one of {', '.join(MODES)}, not '{mode}'.")
        episode_id = self._require_episode("end_episode")
        columns, extra = split_metadata(metadata_updates or {})  # a bad value must not end the episode
        self.flush()
        with self._lock:
            self._episode_id, self._segment_ids = None, set()
        final = {"status": status, "mode": mode, "columns": columns, "extra": extra, "ended_at": utcnow()}
        try:
            self._write_end(episode_id, final)
        except StorageError:
            self._unfinished = (episode_id, final)  # written by the next start_episode (or close)
            raise
        if self._writer.failure is not None:
            raise RecorderFailed(self._writer.failure)
        return episode_id

    def _write_end(self, episode_id: int, final: dict[str, Any]) -> None:
        """The episode's final row: status, end time, step count (of the committed steps), metadata."""
        with self.db.session() as s:
            ep = s.get(Episode, episode_id)
            if ep is None:
                raise NotFound(f"Episode {episode_id} was deleted while it was being recorded.")
            count = s.scalar(sa.select(sa.func.count()).where(Step.episode_id == episode_id))
            ep.status, ep.ended_at, ep.heartbeat_at, ep.num_steps = final["status"], final["ended_at"], utcnow(), \
                int(count or 0)
            if final["mode"] is not None:
                ep.mode = final["mode"]
            for key, value in final["columns"].items():
                setattr(ep, key, value)
            if final["extra"]:
                ep.extra = {**(ep.extra or {}), **final["extra"]}

    def _finish_unfinished(self) -> None:
        """Write the final row of an episode whose end the database refused (raises if it still does)."""
        if self._unfinished is not None:
            episode_id, final = self._unfinished
            self._write_end(episode_id, final)
            self._unfinished = None

    def flush(self) -> None:
        """Block until every step queued so far is committed (or the writer has given up)."""
        self._writer.flush()

    def close(self) -> None:
        """End any open episode as `interrupted` (with an event saying why), then stop the writer."""
        if self._closed:
            return
        try:
            if self._episode_id is not None:
                try:
                    self.event("recorder_closed", None, None, {"reason": "closed before end_episode"})
                finally:
                    self.end_episode("interrupted")
            try:
                self._finish_unfinished()
            except StorageError:  # still unwritable: the next open_database marks it interrupted
                pass
        finally:
            self._closed = True
            self._writer.stop()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_episode(self, what: str) -> int:
        episode_id = self._episode_id
        if episode_id is None:
            raise StorageError(f"{what} was called with no episode being recorded: call start_episode first.")
        return episode_id
