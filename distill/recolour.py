"""Colour-swap augmentation for the high-level dataset: the same moment with the colours of things
permuted, in the pixels and in the words alike.

Twenty coached episodes show each colour with only a few kinds of object, so a policy trained on
them alone learns which scenes hold which strings rather than what "purple" looks like. Swapping
the hues of saturated pixels and the colour words of the task, history and target together
(red <-> purple, say) keeps every sample true while showing each word with many more objects,
and adds the recoloured subtasks to the candidates. Only chromatic colours are swapped: white,
black and grey have no hue to rotate. The hues are the standard ones of the colour words, not
anything a particular robot or sim reports.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

import numpy as np

from distill.dataset import Sample

# OpenCV hue (0..179) of each colour word.
HUES = {"red": 0, "orange": 14, "yellow": 27, "green": 61, "blue": 114, "purple": 139}
HUE_TOLERANCE = 6  # orange sits 13-14 hue steps from red and from yellow
MIN_SATURATION, MIN_VALUE = 100, 60  # duller pixels (table, shadows, grey bins) keep their colour
_WORD = re.compile(r"\b(" + "|".join(HUES) + r")\b", re.IGNORECASE)


def random_permutation(rng: np.random.Generator) -> dict[str, str]:
    names = list(HUES)
    return dict(zip(names, (names[i] for i in rng.permutation(len(names)))))


def recolour_text(text: str, swap: dict[str, str]) -> str:
    return _WORD.sub(lambda m: swap[m.group(1).lower()], text)


def recolour_image(image: np.ndarray, swap: dict[str, str]) -> np.ndarray:
    """An RGB uint8 image with each colour word's hue moved to the hue of the word it swaps to."""
    import cv2

    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    h = hsv[..., 0].astype(np.int16)
    vivid = (hsv[..., 1] >= MIN_SATURATION) & (hsv[..., 2] >= MIN_VALUE)
    out = h.copy()
    for source, target in swap.items():
        offset = (h - HUES[source] + 90) % 180 - 90  # signed distance on the hue circle
        hit = vivid & (np.abs(offset) <= HUE_TOLERANCE)
        out[hit] = (HUES[target] + offset[hit]) % 180
    hsv[..., 0] = out.astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def recoloured(sample: Sample, swap: dict[str, str]) -> Sample:
    return replace(sample, images={c: recolour_image(v, swap) for c, v in sample.images.items()},
                   task=recolour_text(sample.task, swap), history=[recolour_text(t, swap) for t in sample.history],
                   target=recolour_text(sample.target, swap))


def augment(samples: Sequence[Sample], copies: int, seed: int = 0) -> list[Sample]:
    """The samples followed by `copies` recoloured versions of each, every copy with its own swap."""
    rng = np.random.default_rng(seed)
    return list(samples) + [recoloured(s, random_permutation(rng)) for _ in range(copies) for s in samples]
