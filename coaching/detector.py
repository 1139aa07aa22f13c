"""The `Detector` seam: what the robot's perception sees, as a list of labelled boxes.

`detect({camera: HxWx3 uint8}) -> list[Detection]`. Implementations (the perception issue fills
them in): a learned detector trained on synthetic sim renders (the embedded default), an
open-vocabulary transformers detector loaded from a local folder (for labs), and the sim's
segmentation oracle (an upper bound for ablations only). A robot without perception uses
`NO_DETECTOR`, which sees nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One object one camera sees."""

    label: str  # free text a coach could type, e.g. "red cup"
    camera: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of that camera's image
    score: float  # 0..1
    mask: np.ndarray | None = None  # optional HxW bool, same size as the image


class Detector(Protocol):
    def detect(self, images: dict[str, np.ndarray]) -> list[Detection]:
        """The objects in view of each camera (`{camera: HxWx3 uint8}`), best score first."""
        ...


class _NoDetector:
    """Sees nothing: for a robot without perception (the high-level policy then uses the cameras alone)."""

    def detect(self, images: dict[str, np.ndarray]) -> list[Detection]:
        return []


NO_DETECTOR: Detector = _NoDetector()
