"""Crash recovery: find `running` episodes whose recorder died and mark them `interrupted`.

Each recording episode row carries its writer's pid, hostname and a heartbeat the writer thread
refreshes with every commit (and every few seconds when idle). A writer is dead when it ran on
this host and its pid is gone (or a zombie), or when its heartbeat is older than `stale_after_s`
(the only test possible for another host, and a guard against reused pids). A live writer in
another process is never touched. The interrupted episode keeps every committed step.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

import sqlalchemy as sa

from storage.models import Episode, Event, Segment, Step, utcnow


def pid_alive(pid: int) -> bool:
    """True if a (non-zombie) process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:  # a killed child its parent has not reaped yet still answers kill(0)
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return True


def writer_dead_reason(ep: Episode, now: datetime, stale_after_s: float, host: str) -> str | None:
    """Why the episode's writer is considered dead, or None if it may still be recording."""
    if ep.writer_host == host and ep.writer_pid is not None and not pid_alive(ep.writer_pid):
        return f"its recording process {ep.writer_pid} on {host} is gone"
    beat = ep.heartbeat_at or ep.started_at
    if now - beat > timedelta(seconds=stale_after_s):
        return f"its recorder has not written for {(now - beat).total_seconds():.0f} s"
    return None


def recover_interrupted(db, stale_after_s: float = 30.0) -> list[int]:  # db: storage.database.Database
    """Mark dead `running` episodes `interrupted`; returns their ids."""
    host, now = socket.gethostname(), utcnow()
    with db.session(readonly=True) as s:
        running = s.scalars(sa.select(Episode).where(Episode.status == "running")).all()
        dead = [(ep.id, reason) for ep in running
                if (reason := writer_dead_reason(ep, now, stale_after_s, host)) is not None]
    recovered = []
    for episode_id, reason in dead:
        with db.session() as s:
            # Conditional update: if two processes recover at once, only one of them wins.
            ep = s.get(Episode, episode_id)
            if ep is None or ep.status != "running":
                continue
            count, last_t = s.execute(sa.select(sa.func.count(), sa.func.max(Step.t))
                                      .where(Step.episode_id == episode_id)).one()
            done = s.execute(sa.update(Episode).where(Episode.id == episode_id, Episode.status == "running")
                             .values(status="interrupted", ended_at=ep.heartbeat_at or ep.started_at,
                                     num_steps=count))
            if done.rowcount != 1:
                continue
            # Segment step ranges are kept by the writer with each batch; recompute them from the
            # committed steps so they match exactly what survived.
            ranges = s.execute(sa.select(Step.segment_id, sa.func.min(Step.step_index), sa.func.max(Step.step_index))
                               .where(Step.episode_id == episode_id, Step.segment_id.is_not(None))
                               .group_by(Step.segment_id)).all()
            for seg_id, first, last in ranges:
                s.execute(sa.update(Segment).where(Segment.id == seg_id).values(first_step=first, last_step=last))
            s.add(Event(episode_id=episode_id, kind="interrupted", t=last_t, user_name=None,
                        data={"reason": reason, "steps_kept": count}))
            recovered.append(episode_id)
    return recovered
