"""What the robot's perception sees right now: a `Detector` run beside the control loop.

It owns the one thread that runs the detector on the newest published camera frame, a few times
a second, and keeps the latest detections for whoever asks (the page's object list and boxes,
the Autonomous tab). The control loop only hands its frame over (`on_frame`, a reference swap),
so a slow detector lowers the perception rate, never the loop's.

What it lists is steadied: a label counts as in view once it was found in `SEEN_OF[0]` of the last
`SEEN_OF[1]` frames looked at, so a detector's one-frame false positive or miss does not make the
page's chips flicker (a coach reads that list to know what to type).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

from coaching.detector import Detection, Detector

SEEN_OF = (2, 3)  # in view: found in 2 of the last 3 frames (at 2.5 Hz: listed after 0.4-0.8 s)


class PerceptionWatcher:
    """Runs `detector` on the session's newest frame at up to `hz`; `snapshot()` is the latest result."""

    def __init__(self, session, detector: Detector, hz: float = 2.5):
        self.detector = detector
        self.period = 1.0 / hz
        self._frame = None
        self._result: dict[str, Any] = {"seq": None, "time_ms": None, "objects": [], "labels": [], "detect_ms": None,
                                        "error": None}
        self._recent: deque[set[str]] = deque(maxlen=SEEN_OF[1])  # labels found in each recent frame
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
            self._recent.append({d.label for d in found})
            seen = Counter(label for labels in self._recent for label in labels)
            steady = {label for label, n in seen.items() if n >= min(SEEN_OF[0], len(self._recent))}
            result["objects"] = [o for o in result["objects"] if o["label"] in steady]
            result["labels"] = sorted(steady)
            with self._lock:
                self._result = result

    def snapshot(self) -> dict[str, Any]:
        """{"seq", "time_ms" (of the frame), "detect_ms", "error", "objects": [{label, camera, box, score}]
        of the labels steadily in view (`SEEN_OF`), "labels": those labels, distinct and sorted}."""
        with self._lock:
            return dict(self._result)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def as_json(d: Detection) -> dict[str, Any]:
    """A detection without its mask, the box rounded to 0.1 pixel: what the page draws."""
    return {"label": d.label, "camera": d.camera, "box": [round(v, 1) for v in d.box], "score": round(d.score, 3)}
