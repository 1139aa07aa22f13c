"""Benchmark: the episode recorder on SQLite and on a local PostgreSQL server.

Two figures per backend:
- sustained: a loop at 30 Hz hands 3 cameras at 320x240 plus state and action to the recorder for
  `duration_s` (60 s by default) while a second thread starts a segment every few seconds (as the
  browser would); reported are the frames missing from the database afterwards and the p99 time
  of the loop's `record_step` call;
- size: one coached minute at 2 cameras x 15 fps, 224x224, JPEG at the default quality, fed as fast
  as the recorder takes it; reported is the database growth in MB (10^6 bytes) per minute.

Images are synthetic but compress like camera images: a smooth lit gradient with moving coloured
shapes and mild sensor noise (not flat, not pure noise). SQLite runs on a temp file on the local
disk; PostgreSQL is a fresh durable server (fsync on, the default settings) started here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import sqlalchemy as sa
from tqdm import tqdm

from storage import Recorder, RecorderConfig, RecorderOverflow, open_database
from storage.local_postgres import LocalPostgres

TABLES = ("tasks", "policies", "episodes", "segments", "subgoal_images", "steps", "frames", "events")


@dataclass
class LoopSpec:
    cameras: int
    fps: float
    height: int
    width: int
    state_dim: int = 14
    action_dim: int = 7


SUSTAINED = LoopSpec(cameras=3, fps=30.0, height=240, width=320)
COACHED = LoopSpec(cameras=2, fps=15.0, height=224, width=224)


def synthetic_frames(n: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """`n` frames of one camera: a lit, textured table with moving objects and sensor noise.

    Tuned so JPEG at quality 90 is a bit larger than the sim's own renders (about 13 KB at
    224x224), as a real camera's noisier images would be.
    """
    import cv2

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    light = np.stack([90 + 60 * x / width + 20 * np.sin(y / 37.0),
                      80 + 50 * y / height + 15 * np.cos(x / 23.0),
                      70 + 40 * (x + y) / (width + height) + 10 * np.sin((x - y) / 51.0)], axis=-1)
    grain = cv2.GaussianBlur(rng.normal(0, 20, (height, width)).astype(np.float32), (0, 0), 1.6)
    base = light + grain[..., None] + 6 * np.sin(x / 3.1 + 2 * np.sin(y / 17.0))[..., None]
    shapes = [(rng.uniform(0.05, 0.95, 2), rng.uniform(-0.01, 0.01, 2), int(rng.integers(6, 26)),
               tuple(int(c) for c in rng.integers(20, 235, 3)), bool(rng.integers(2))) for _ in range(12)]
    frames = []
    for k in range(n):
        img = base.copy()
        for (pos, vel, size, color, is_box) in shapes:
            cx, cy = (((pos + k * vel) % 1.0) * (width, height)).astype(int)
            dark = tuple(0.4 * c for c in color)
            if is_box:
                p0, p1 = (cx - size, cy - size // 2), (cx + size, cy + size // 2)
                cv2.rectangle(img, p0, p1, color, -1, lineType=cv2.LINE_AA)
                cv2.rectangle(img, p0, p1, dark, 1, lineType=cv2.LINE_AA)
            else:
                cv2.circle(img, (cx, cy), size, color, -1, lineType=cv2.LINE_AA)
                cv2.circle(img, (cx, cy), size, dark, 1, lineType=cv2.LINE_AA)
        img += rng.normal(0, 4.0, img.shape).astype(np.float32)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def _frame_bank(spec: LoopSpec, n: int) -> list[list[np.ndarray]]:
    return [synthetic_frames(n, spec.height, spec.width, seed=cam) for cam in range(spec.cameras)]


def _start(rec: Recorder, spec: LoopSpec, mode: str = "coached") -> int:
    robot = {"name": "bench", "cameras": [f"cam{c}" for c in range(spec.cameras)],
             "image_size": [spec.height, spec.width], "control_hz": spec.fps}
    return rec.start_episode("bus the table: dishes to the tub, trash to the bin", robot, mode=mode,
                             user="bench", seed=0, metadata={"speed": "normal", "quality": 4, "control_mode": "ee"})


def _stored_frames(db, episode_id: int) -> int:
    with db.engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM frames WHERE episode_id = {int(episode_id)}").scalar())


def sustained(url: str, duration_s: float, label: str) -> dict[str, float]:
    """Real-time loop; returns dropped frames and the p99 of the record_step call in ms."""
    spec = SUSTAINED
    bank = _frame_bank(spec, int(spec.fps * 2))
    rng = np.random.default_rng(0)
    db = open_database(url)
    rec = Recorder(db, RecorderConfig())
    episode_id = _start(rec, spec)
    stop = threading.Event()
    # The subtask the loop executes: its segment id goes with every step, as the control loop passes it.
    active = [rec.start_segment("subtask: start", "coach", 0.0, user="bench")]

    def coach() -> None:  # segments arrive from another thread, like browser callbacks
        k = 0
        while not stop.wait(4.0):
            active[0] = rec.start_segment(f"subtask {k}: pick up the 'blue' cup", "coach", time.perf_counter(),
                                          user="bench")
            k += 1

    coach_thread = threading.Thread(target=coach, daemon=True)
    coach_thread.start()
    steps = int(duration_s * spec.fps)
    latencies = np.zeros(steps)
    refused = 0
    period = 1.0 / spec.fps
    start = time.perf_counter()
    with tqdm(total=steps, desc=f"{label}: 3 cams x 30 fps", unit="step", file=sys.stderr, leave=False) as bar:
        for k in range(steps):
            delay = start + k * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            images = {f"cam{c}": bank[c][k % len(bank[c])] for c in range(spec.cameras)}
            state, action = rng.normal(size=spec.state_dim), rng.normal(size=spec.action_dim)
            t0 = time.perf_counter()
            try:
                rec.record_step(k * period, state, action, images, segment_id=active[0])
            except RecorderOverflow:
                refused += 1
            latencies[k] = time.perf_counter() - t0
            if k % int(spec.fps) == 0:
                bar.update(int(spec.fps) if k else 1)
    stop.set()
    coach_thread.join()
    rec.end_episode("success")
    rec.close()
    stored = _stored_frames(db, episode_id)
    db.close()
    return {"dropped_frames": steps * spec.cameras - stored,
            "record_call_p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 3),
            "refused_steps": refused}


def _sqlite_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _postgres_bytes(url: str) -> int:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        total = sum(int(conn.exec_driver_sql(f"SELECT pg_total_relation_size('{t}')").scalar()) for t in TABLES)
    engine.dispose()
    return total


def coached_minute_size(url: str, size_of: Callable[[], int], label: str) -> float:
    """Database growth, in MB per coached minute, of one minute at 2 cameras x 15 fps, 224x224."""
    spec = COACHED
    bank = _frame_bank(spec, 60)
    rng = np.random.default_rng(1)
    db = open_database(url)
    db.close()
    before = size_of()
    db = open_database(url)
    rec = Recorder(db, RecorderConfig())
    _start(rec, spec)
    steps = int(60 * spec.fps)
    for k in tqdm(range(steps), desc=f"{label}: a coached minute", unit="step", file=sys.stderr, leave=False):
        if k % 120 == 0:  # a new subtask every 8 s
            segment = rec.start_segment(f"subtask {k // 120}: put the red cup in the bussing tub", "coach",
                                        k / spec.fps)
        while rec.stats.queue_depth > rec.config.max_queue_steps // 2:
            time.sleep(0.01)  # not a real-time test: just never overflow
        images = {f"cam{c}": bank[c][k % len(bank[c])] for c in range(spec.cameras)}
        rec.record_step(k / spec.fps, rng.normal(size=spec.state_dim), rng.normal(size=spec.action_dim), images,
                        segment_id=segment)
    rec.end_episode("success")
    rec.close()
    db.close()  # SQLite folds its WAL into the file when the last connection closes
    minutes = steps / spec.fps / 60.0
    return round((size_of() - before) / 1e6 / minutes, 2)


def _figures(sus: dict[str, float], mb: float) -> dict[str, float]:
    return {"dropped_frames": sus["dropped_frames"], "record_call_p99_ms": sus["record_call_p99_ms"],
            "mb_per_coached_minute": mb}


def run(duration_s: float = 60.0, backends: tuple[str, ...] = ("sqlite", "postgresql")) -> dict:
    result: dict[str, dict[str, float]] = {}
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory(prefix="coachlab-bench-") as tmp:
            sus = sustained(f"sqlite:///{tmp}/sustained.db", duration_s, "sqlite")
            path = Path(tmp) / "minute.db"
            mb = coached_minute_size(f"sqlite:///{path}", lambda: _sqlite_bytes(path), "sqlite")
            result["sqlite"] = _figures(sus, mb)
    if "postgresql" in backends:
        with LocalPostgres() as pg:
            sus = sustained(pg.create_database(), duration_s, "postgresql")
            url = pg.create_database()
            mb = coached_minute_size(url, lambda: _postgres_bytes(url), "postgresql")
            result["postgresql"] = _figures(sus, mb)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sustained recording per backend")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    print(json.dumps(run(args.duration, backends)))


if __name__ == "__main__":
    main()
