"""How good a predicted subgoal image is: PSNR and SSIM over the whole frame and over the pixels that
really change between the current and the end frame, for a model and for the copy-the-current-frame
baseline (the prediction "nothing happens").

Over the whole frame most pixels do not change, so copying already scores well there; the changed
pixels are where a subgoal model earns its keep, so that is where the gain is measured. SSIM comes
from scikit-image (its map, averaged over the changed pixels for the masked figure).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

CHANGE_THRESHOLD = 0.1  # a pixel "changes" when some colour channel moves by over 10% of its range


def changed_mask(current: np.ndarray, end: np.ndarray, threshold: float = CHANGE_THRESHOLD) -> np.ndarray:
    """(H, W) bool: the pixels whose colour changes by more than `threshold` of the range."""
    diff = np.abs(current.astype(np.float32) - end.astype(np.float32)) / 255.0
    return diff.max(axis=-1) > threshold


def squared_error(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, int]:
    """(sum of squared errors in [0, 1] units, number of values) over the mask (all pixels when None)."""
    err = ((pred.astype(np.float32) - target.astype(np.float32)) / 255.0) ** 2
    if mask is not None:
        err = err[mask]
    return float(err.sum()), int(err.size)


def psnr_from(sse: float, count: int) -> float | None:
    """PSNR in dB of pooled squared errors (peak 1); None when there is nothing to measure."""
    if count == 0:
        return None
    mse = sse / count
    return 99.0 if mse <= 1e-10 else 10.0 * math.log10(1.0 / mse)


def ssim_map(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(H, W) SSIM of two uint8 RGB images (mean over colour channels)."""
    from skimage.metrics import structural_similarity

    _, full = structural_similarity(pred, target, channel_axis=2, data_range=255, full=True)
    return full.mean(axis=-1)


class ImageScores:
    """Accumulates PSNR (pooled over all images, as one big image) and SSIM (mean per image) for one camera."""

    def __init__(self) -> None:
        self.sse = {"all": 0.0, "changed": 0.0}
        self.count = {"all": 0, "changed": 0}
        self.ssim: dict[str, list[float]] = {"all": [], "changed": []}

    def add(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> None:
        for region, m in (("all", None), ("changed", mask)):
            sse, n = squared_error(pred, target, m)
            self.sse[region] += sse
            self.count[region] += n
        smap = ssim_map(pred, target)
        self.ssim["all"].append(float(smap.mean()))
        if mask.any():
            self.ssim["changed"].append(float(smap[mask].mean()))

    def summary(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for region in ("all", "changed"):
            p = psnr_from(self.sse[region], self.count[region])
            out[f"psnr_{region}_db"] = None if p is None else round(p, 2)
            out[f"ssim_{region}"] = round(float(np.mean(self.ssim[region])), 4) if self.ssim[region] else None
        return out


def compare_to_copy(triples: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, dict[str, float | None]]:
    """Per camera, the model's and the copy baseline's scores and the model's PSNR gain over changed pixels.

    `triples` yields (camera, current, predicted, end) uint8 images.
    """
    model: dict[str, ImageScores] = {}
    copy: dict[str, ImageScores] = {}
    for cam, current, pred, end in triples:
        mask = changed_mask(current, end)
        model.setdefault(cam, ImageScores()).add(pred, end, mask)
        copy.setdefault(cam, ImageScores()).add(current, end, mask)
    out = {}
    for cam in model:
        m, c = model[cam].summary(), copy[cam].summary()
        gain = (None if m["psnr_changed_db"] is None or c["psnr_changed_db"] is None
                else round(m["psnr_changed_db"] - c["psnr_changed_db"], 2))
        out[cam] = {**m, **{f"copy_{k}": v for k, v in c.items()}, "psnr_gain_changed_db": gain}
    return out
