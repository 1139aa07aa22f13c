"""The recorder's writer thread: it owns the step queue and everything done off the control loop.

The recorder puts `StepItem`s on the bounded queue; the one writer thread encodes each step's
frames (JPEG or PNG) and commits steps and frames in small batches (every `commit_every_s`),
keeping the segments' step ranges and the episode's `num_steps` and heartbeat current in the same
transaction, and refreshing the heartbeat every `heartbeat_every_s` while idle. A failing commit is
retried for `retry_for_s` (meanwhile `failing` holds the cause, so a queue that fills up is
blamed on it, not on speed); after that the writer gives up: it records one sentence in `failure`
naming the cause (a full disk, a read-only database, ...), counts the unsaved steps as lost, and
the recorder raises `RecorderFailed` on its next call. `clear_failure()` lets the recorder try
again for its next episode (after space is freed), since an app keeps one recorder for its life.
`flush()` and `stop()` travel through the same queue, so they wait for every step queued before them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from storage.database import Database
from storage.errors import RecorderFailed, StorageError, first_line, is_disk_full, is_read_only
from storage.frames import encode_image
from storage.models import Episode, Frame, Segment, Step, utcnow

if TYPE_CHECKING:  # the recorder owns its config and counters; the writer only uses them
    from storage.recorder import RecorderConfig, RecorderStats

log = logging.getLogger("coachlab.storage")


@dataclass(slots=True)
class StepItem:
    """One step on its way to the database: arrays already as float64 bytes, images not yet encoded."""

    episode_id: int
    index: int
    t: float
    state: bytes
    action: bytes | None
    images: dict[str, np.ndarray]
    segment_id: int | None
    encoded: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Control:
    kind: str  # "flush" | "stop"
    done: threading.Event = field(default_factory=threading.Event)


class Writer:
    """The queue and the thread that drains it into `db`. `current_episode()` names the episode whose
    heartbeat to refresh while idle (None: none)."""

    def __init__(self, db: Database, config: RecorderConfig, stats: RecorderStats,
                 current_episode: Callable[[], int | None]) -> None:
        self.db = db
        self.config = config
        self.stats = stats
        self._current_episode = current_episode
        self._queue: queue.Queue[StepItem | _Control] = queue.Queue(maxsize=config.max_queue_steps)
        self.failure: str | None = None  # set by the writer thread when it gives up; cleared by clear_failure
        self.failing: str | None = None  # the cause while a commit is being retried (None once one succeeds)
        self._thread = threading.Thread(target=self._run, name="coachlab-recorder", daemon=True)
        self._thread.start()

    # ----- the recorder's side ----------------------------------------------------------------

    def put(self, item: StepItem, wait_s: float = 0.0) -> None:
        """Queue a step; raises queue.Full at once (or after `wait_s` > 0) if there is no room."""
        self._queue.put(item, timeout=wait_s) if wait_s > 0 else self._queue.put_nowait(item)

    def depth(self) -> int:
        return self._queue.qsize()

    def clear_failure(self) -> None:
        """Accept steps again after giving up (the recorder calls it when a new episode starts): a
        commit that still fails gives up again, with the same one-sentence cause."""
        self.failure = None

    def flush(self) -> None:
        """Block until every step queued so far is committed (or the writer has given up)."""
        self._send_control(_Control("flush"))

    def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        if self._thread.is_alive():
            self._send_control(_Control("stop"))
        self._thread.join(timeout=5)

    def _send_control(self, ctrl: _Control) -> None:
        give_up_at = time.monotonic() + self.config.flush_timeout_s
        while True:  # a blocking put, but one that notices a dead writer instead of hanging
            try:
                self._queue.put(ctrl, timeout=0.1)
                break
            except queue.Full:
                self._check_alive(give_up_at)
        while not ctrl.done.wait(0.1):
            self._check_alive(give_up_at)

    def _check_alive(self, give_up_at: float) -> None:
        if not self._thread.is_alive():
            raise RecorderFailed(self.failure or "The recorder's writer thread has stopped: start a new Recorder.")
        if time.monotonic() > give_up_at:
            raise StorageError(f"The recorder could not write its queued steps within {self.config.flush_timeout_s:.0f}"
                               f" s: the database at {self.db.display_url} is too slow or stuck.")

    # ----- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # a bug must stop the recording loudly, not kill the thread quietly
            self._give_up([], err)
            raise

    def _loop(self) -> None:
        cfg = self.config
        pending: list[StepItem] = []
        deadline = 0.0
        last_beat = time.monotonic()
        while True:
            wait = max(0.0, deadline - time.monotonic()) if pending else cfg.heartbeat_every_s
            try:
                item: StepItem | _Control | None = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if isinstance(item, StepItem):
                if self.failure is not None:
                    self.stats.lost += 1
                    continue
                try:
                    self._encode(item)
                except Exception as err:
                    self._give_up(pending + [item], err)
                    pending = []
                    continue
                pending.append(item)
                if len(pending) == 1:
                    deadline = time.monotonic() + cfg.commit_every_s
                if time.monotonic() < deadline:
                    continue
            if pending:
                self._commit(pending)
                pending = []
                last_beat = time.monotonic()
            elif item is None and time.monotonic() - last_beat >= cfg.heartbeat_every_s:
                self._heartbeat()
                last_beat = time.monotonic()
            if isinstance(item, _Control):
                item.done.set()
                if item.kind == "stop":
                    return

    def _encode(self, item: StepItem) -> None:
        cfg = self.config
        for cam, image in item.images.items():
            item.encoded[cam] = encode_image(image, cfg.image_format, cfg.jpeg_quality, cfg.png_compression)
        item.images = {}  # free the raw pixels now rather than after the commit

    def _commit(self, batch: list[StepItem]) -> None:
        give_up_at = time.monotonic() + self.config.retry_for_s
        attempt = 0
        while True:
            try:
                self._write_batch(batch)
                break
            except IntegrityError as err:
                # A retry after a commit whose reply got lost finds its own rows already there.
                if attempt > 0 and self._batch_exists(batch):
                    break
                return self._give_up(batch, err)
            except DBAPIError as err:
                self.stats.writer_errors += 1
                self.stats.last_error = self.failing = first_line(err)
                log.warning("recorder: commit failed (%s); retrying", first_line(err))
                if time.monotonic() >= give_up_at:
                    return self._give_up(batch, err)
                time.sleep(min(0.1 * 2 ** attempt, 1.0))
                attempt += 1
            except Exception as err:  # a bug must still stop the recording loudly
                return self._give_up(batch, err)
        self.failing = None
        self.stats.written += len(batch)
        self.stats.frames_written += sum(len(item.encoded) for item in batch)

    def _write_batch(self, batch: list[StepItem]) -> None:
        steps, frames = [], []
        ranges: dict[int, list[int]] = {}
        counts: dict[int, int] = {}
        for item in batch:
            steps.append({"episode_id": item.episode_id, "step_index": item.index, "t": item.t,
                          "state": item.state, "action": item.action, "segment_id": item.segment_id})
            for cam, data in item.encoded.items():
                frames.append({"episode_id": item.episode_id, "camera": cam, "step_index": item.index,
                               "format": self.config.image_format, "data": data})
            if item.segment_id is not None:
                r = ranges.setdefault(item.segment_id, [item.index, item.index])
                r[1] = item.index
            counts[item.episode_id] = counts.get(item.episode_id, 0) + 1
        with self.db.engine.begin() as conn:
            conn.execute(sa.insert(Step.__table__), steps)
            if frames:
                conn.execute(sa.insert(Frame.__table__), frames)
            seg = Segment.__table__.c
            for seg_id, (first, last) in ranges.items():
                conn.execute(sa.update(Segment.__table__).where(seg.id == seg_id)
                             .values(first_step=sa.func.coalesce(seg.first_step, first), last_step=last))
            ep = Episode.__table__.c
            now = utcnow()
            for episode_id, n in counts.items():
                conn.execute(sa.update(Episode.__table__).where(ep.id == episode_id)
                             .values(num_steps=ep.num_steps + n, heartbeat_at=now))

    def _batch_exists(self, batch: list[StepItem]) -> bool:
        last = batch[-1]
        try:
            with self.db.engine.connect() as conn:
                return conn.scalar(sa.select(sa.func.count()).select_from(Step.__table__).where(
                    Step.__table__.c.episode_id == last.episode_id,
                    Step.__table__.c.step_index == last.index)) == 1
        except DBAPIError:
            return False

    def _heartbeat(self) -> None:
        episode_id = self._current_episode()
        if episode_id is None or self.failure is not None:
            return
        try:
            with self.db.engine.begin() as conn:
                conn.execute(sa.update(Episode.__table__).where(Episode.__table__.c.id == episode_id)
                             .values(heartbeat_at=utcnow()))
        except DBAPIError as err:  # the next batch commit will retry and, if need be, fail loudly
            self.stats.writer_errors += 1
            self.stats.last_error = first_line(err)

    def _give_up(self, batch: list[StepItem], err: BaseException) -> None:
        self.stats.writer_errors += 1
        self.stats.lost += len(batch)
        self.stats.last_error = first_line(err)
        self.failing = None
        where = (f", so episode {batch[0].episode_id} is saved only up to step {batch[0].index - 1}"
                 if batch else "")
        self.failure = (f"The recorder could not write to the database at {self.db.display_url} "
                        f"({first_line(err)}){where}; {remedy(err)}, then start a new episode (every step "
                        f"already committed is kept).")
        log.error(self.failure)


def remedy(err: BaseException | str) -> str:
    """What to do about a database write that failed with `err` (or its first line), as a clause."""
    if is_disk_full(err):
        return "the disk holding the database is full: free space on it"
    if is_read_only(err):
        return "the database is read-only: record to a writable one (--db)"
    return "fix the database"
