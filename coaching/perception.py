"""What the robot's perception sees right now: a `Detector` run beside the control loop.

It owns the one thread that runs the detector on the newest published camera frame, a few times
a second, and keeps the latest detections for whoever asks (the page's object list and boxes,
the Autonomous tab). The control loop only hands its frame over (`on_frame`, a reference swap),
so a slow detector lowers the perception rate, never the loop's.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from coaching.detector import Detection, Detector


class PerceptionWatcher:
    """Runs `detector` on the session's newest frame at up to `hz`; `snapshot()` is the latest result."""

    def __init__(self, session, detector: Detector, hz: float = 2.5):
        self.detector = detector
        self.period = 1.0 / hz
        self._frame = None
        self._result: dict[str, Any] = {"seq": None, "time_ms": None, "objects": [], "detect_ms": None, "error": None}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        session.on_frame(self._published)
        self._thread = threading.Thread(target=self._run, name="perception", daemon=True)
        self._thread.start()

    def _published(self, frame) -> None:  # on the control loop's thread: keep the reference, return
        self._frame = frame

    def _run(self) -> None:
        done_seq = None
        while not self._stop.wait(self.period):
            frame = self._frame
            if frame is None or frame.seq == done_seq:
                continue
            done_seq = frame.seq
            start = time.perf_counter()
            try:
                found = self.detector.detect(dict(frame.images))
                error = None
            except Exception as err:  # the page says perception failed; the loop goes on without it
                found, error = [], f"The detector failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
            result = {"seq": frame.seq, "time_ms": round(frame.wall_time * 1000, 1), "error": error,
                      "detect_ms": round(1000 * (time.perf_counter() - start), 1),
                      "objects": [as_json(d) for d in found]}
            with self._lock:
                self._result = result

    def snapshot(self) -> dict[str, Any]:
        """{"seq", "time_ms" (of the frame), "detect_ms", "error", "objects": [{label, camera, box, score}],
        "labels": the distinct labels in view, sorted}."""
        with self._lock:
            result = dict(self._result)
        result["labels"] = sorted({o["label"] for o in result["objects"]})
        return result

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def as_json(d: Detection) -> dict[str, Any]:
    """A detection without its mask, the box rounded to 0.1 pixel: what the page draws."""
    return {"label": d.label, "camera": d.camera, "box": [round(v, 1) for v in d.box], "score": round(d.score, 3)}
