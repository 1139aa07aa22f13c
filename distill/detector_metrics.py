"""How well detections match the truth: precision and recall of (colour, kind) labels and box IoU.

It owns the scoring rule the trainer's validation and `coachlab bench perception` share. Per image
(one camera of one frame), a detection is a true positive when its label names an item the camera
shows at least `min_visible` of (the truth), a false positive when its label names nothing the
camera shows at all; a detection of an item that shows less than that is neither (too hidden to
demand, too real to punish). Recall counts the truth items detected. IoU is measured on the true
positives, between the detected box and the box of the item's visible pixels.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np


class Truth(Protocol):
    """One item as one camera sees it (the sim's `ItemView` has these fields)."""

    label: str
    camera: str
    box: tuple[float, float, float, float]
    visible_fraction: float


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes in pixels; 0 when they do not touch."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class DetectionScore:
    """Running counts per camera over many images."""

    min_visible: float = 0.5
    tp: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    fp: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    fn: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ious: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, camera: str, detections: Sequence, truth: Sequence[Truth]) -> None:
        """Score one image: `detections` (with label, box) against the `truth` items of that camera."""
        shown = {t.label: t for t in truth}
        wanted = {t.label for t in truth if t.visible_fraction >= self.min_visible}
        found = set()
        for d in detections:
            if d.label in wanted and d.label not in found:
                found.add(d.label)
                self.tp[camera] += 1
                self.ious[camera].append(box_iou(d.box, shown[d.label].box))
            elif d.label not in shown:
                self.fp[camera] += 1
        for label in wanted - found:
            self.fn[camera] += 1

    def precision(self, camera: str) -> float:
        n = self.tp[camera] + self.fp[camera]
        return round(self.tp[camera] / n, 4) if n else 1.0

    def recall(self, camera: str) -> float:
        n = self.tp[camera] + self.fn[camera]
        return round(self.tp[camera] / n, 4) if n else 1.0

    def iou_median(self, camera: str | None = None) -> float:
        values = self.ious[camera] if camera else [v for vs in self.ious.values() for v in vs]
        return round(float(np.median(values)), 4) if values else 0.0

    def summary(self) -> dict:
        cams = sorted(set(self.tp) | set(self.fp) | set(self.fn))
        return {"precision": {c: self.precision(c) for c in cams}, "recall": {c: self.recall(c) for c in cams},
                "iou_median": self.iou_median(), "iou_median_by_camera": {c: self.iou_median(c) for c in cams},
                "truth_items": {c: self.tp[c] + self.fn[c] for c in cams}}
