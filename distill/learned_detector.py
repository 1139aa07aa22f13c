"""The learned detector behind the `Detector` seam: the embedded default's perception.

It owns running the networks (`distill/detector_model.py`) on camera images and decoding them
into detections. The segmenter's item and colour logits are upsampled to the image; item pixels
(probability > 0.5) of one colour that touch form a region; the classifier names each region's
kind from its crop (`item_crop`); regions that get the same label merge when the smaller is at
least `MERGE_FRACTION` of the largest (an item the arm cuts in two is still one item), else the
largest stands alone. One detection per label per camera, because a label a coach types must
name one item. Score: mean item probability over the region times the kind's probability.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from dataclasses import dataclass

import cv2
import numpy as np

from coaching.detector import Detection
from distill.checkpoint import load_model
from distill.dataset import DistillError

# The detector trained on synthetic sim renders that ships with coachlab, the embedded default
# (`coachlab train-detector --out distill/detector` rebuilds it; docs/perception.md).
_DETECTING = threading.Lock()
SHIPPED = str(Path(__file__).resolve().parent / "detector")

FORMAT = "detector"
COMMAND = "coachlab train-detector"
MERGE_FRACTION = 0.3
MIN_PIXELS = 8  # smaller regions are specks at an edge, not items


@dataclass(frozen=True)
class DecodeConfig:
    min_score: float = 0.4  # item probability x kind probability
    min_pixels: int = MIN_PIXELS
    item_threshold: float = 0.5  # a pixel is an item's above this probability


def check_images(images: dict[str, np.ndarray]) -> None:
    """One sentence for images the detector cannot read: not a dict of HxWx3 uint8 arrays."""
    if not isinstance(images, dict) or not images:
        raise ValueError("Give the detector a dict of camera name to HxWx3 uint8 image.")
    for cam, image in images.items():
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            shape = getattr(image, "shape", None)
            dtype = getattr(image, "dtype", type(image).__name__)
            raise ValueError(f"The image of camera {cam!r} is {shape} {dtype}; the detector takes HxWx3 uint8 RGB.")
        if image.shape[0] < 16 or image.shape[1] < 16:
            raise ValueError(f"The image of camera {cam!r} is {image.shape[1]}x{image.shape[0]}; the detector needs "
                             "at least 16x16 pixels.")


class LearnedDetector:
    """`detect({camera: HxWx3 uint8}) -> list[Detection]` with a network trained by `coachlab train-detector`."""

    def __init__(self, checkpoint, decode: DecodeConfig | None = None, threads: int | None = 1):
        import torch

        self.net = checkpoint.model
        self.cfg = checkpoint.config
        self.training = checkpoint.training
        self.directory = checkpoint.directory
        self.decode = decode or DecodeConfig()
        # one core by default: it runs beside the control loop, which must keep its rate
        self._torch = torch
        self._threads = threads

    @classmethod
    def load(cls, directory: str | os.PathLike, **kwargs) -> "LearnedDetector":
        """Load a `coachlab train-detector` output directory; every way it can be wrong is one DistillError."""
        from distill.detector_model import DetectorConfig, DetectorNet

        def build(raw: dict) -> DetectorNet:
            return DetectorNet(DetectorConfig.from_dict(raw))

        return cls(load_model(directory, FORMAT, build, COMMAND), **kwargs)

    def detect(self, images: dict[str, np.ndarray]) -> list[Detection]:
        """The items each camera shows, best score first. Raises ValueError (one sentence) for bad images."""
        check_images(images)
        torch = self._torch
        cams = list(images)
        out: list[Detection] = []
        by_size: dict[tuple[int, int], list[str]] = {}
        for cam in cams:
            by_size.setdefault(images[cam].shape[:2], []).append(cam)
        with _DETECTING:  # the thread count is process-wide: one detection at a time (the page and a runner share it)
            before = torch.get_num_threads()
            if self._threads:
                torch.set_num_threads(self._threads)
            try:
                for (h, w), group in by_size.items():
                    item_p, colour = self._predict(np.stack([images[c] for c in group]), h, w)
                    for i, cam in enumerate(group):
                        out += self._decode(cam, images[cam], item_p[i], colour[i])
            finally:
                torch.set_num_threads(before)
        return sorted(out, key=lambda d: -d.score)

    def _predict(self, batch: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """BxHxWx3 uint8 -> (item probability BxHxW float32, colour index BxHxW uint8)."""
        torch, F = self._torch, self._torch.nn.functional
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
        ph, pw = (-h) % 8, (-w) % 8  # the network halves three times
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        with torch.inference_mode():
            item, colour = self.net.segmenter(x)
            item = item.softmax(1)[:, 1].numpy()
            colour = colour.argmax(1).numpy().astype(np.uint8)
        # back to full size in OpenCV: bilinear for the probability, nearest for the colour index
        size = (x.shape[-1], x.shape[-2])
        item = np.stack([cv2.resize(p, size, interpolation=cv2.INTER_LINEAR)[:h, :w] for p in item])
        colour = np.stack([cv2.resize(c, size, interpolation=cv2.INTER_NEAREST)[:h, :w] for c in colour])
        return item, colour

    def _decode(self, camera: str, image: np.ndarray, item_p: np.ndarray, colour: np.ndarray) -> list[Detection]:
        """Regions of one colour become items; the classifier names each one's kind or rejects it; one
        detection per label."""
        regions = item_regions(item_p, colour, self.decode.min_pixels, self.decode.item_threshold)
        if not regions:
            return []
        torch = self._torch
        crops = np.stack([item_crop(image, r.mask, r.box, self.cfg.crop, r.origin) for r in regions])
        with torch.inference_mode():
            kind_p = self.net.classifier(torch.from_numpy(crops).float().div_(255.0)).softmax(1).numpy()
        by_label: dict[str, list[tuple[Region, float]]] = {}
        for r, p in zip(regions, kind_p):
            k = int(p.argmax())
            if k == len(self.cfg.kinds):  # the classifier's last class: not an item (a pad, the arm, a wall)
                continue
            score = r.mean(item_p) * float(p[k])
            by_label.setdefault(f"{self.cfg.colours[r.colour]} {self.cfg.kinds[k]}", []).append((r, score))
        out = []
        for label, parts in by_label.items():
            kept, score = _merge(parts)
            if score >= self.decode.min_score:
                mask = np.zeros(item_p.shape, bool)
                for r in kept:
                    x0, y0 = r.origin
                    mask[y0:y0 + r.mask.shape[0], x0:x0 + r.mask.shape[1]] |= r.mask
                box = (min(r.box[0] for r in kept), min(r.box[1] for r in kept),
                       max(r.box[2] for r in kept), max(r.box[3] for r in kept))
                out.append(Detection(label, camera, box, score, mask))
        return out


@dataclass
class Region:
    """One connected region of item pixels of one colour: its mask in the window at `origin`."""

    colour: int
    origin: tuple[int, int]  # x, y of the window's top-left pixel in the image
    mask: np.ndarray  # hxw bool over the window (the region's bounding box)

    @property
    def box(self) -> tuple[float, float, float, float]:
        x, y = self.origin
        return float(x), float(y), float(x + self.mask.shape[1]), float(y + self.mask.shape[0])

    @property
    def size(self) -> int:
        return int(self.mask.sum())

    def mean(self, values: np.ndarray) -> float:
        """The mean of an HxW array over the region's pixels."""
        x, y = self.origin
        return float(values[y:y + self.mask.shape[0], x:x + self.mask.shape[1]][self.mask].mean())


def item_regions(item_p: np.ndarray, colour: np.ndarray, min_pixels: int = MIN_PIXELS,
                 threshold: float = 0.5) -> list[Region]:
    """Every connected region of item pixels (probability above `threshold`) of one colour, at least
    `min_pixels` large: the candidates the classifier names."""
    fg = item_p > threshold
    out = []
    for c in np.unique(colour[fg]):
        n, comp, stats, _ = cv2.connectedComponentsWithStats((fg & (colour == c)).astype(np.uint8), connectivity=8)
        for r in range(1, n):
            x, y, w, h, area = stats[r]
            if area >= min_pixels:
                out.append(Region(int(c), (int(x), int(y)), comp[y:y + h, x:x + w] == r))
    return out


def _merge(parts: list[tuple[Region, float]]) -> tuple[list[Region], float]:
    """One label's regions as one item: the largest, plus the others at least `MERGE_FRACTION` of its
    size that lie within one item-width of it (an item the arm cuts in two); the rest are dropped."""
    sizes = [r.size for r, _ in parts]
    big = int(np.argmax(sizes))
    x0, y0, x1, y1 = parts[big][0].box
    reach = max(x1 - x0, y1 - y0)
    keep = [big]
    for i, (r, _) in enumerate(parts):
        a0, b0, a1, b1 = r.box
        if i != big and sizes[i] >= MERGE_FRACTION * sizes[big] and \
                a0 < x1 + reach and a1 > x0 - reach and b0 < y1 + reach and b1 > y0 - reach:
            keep.append(i)
    score = float(np.average([parts[i][1] for i in keep], weights=[sizes[i] for i in keep]))
    return [parts[i][0] for i in keep], score


def item_crop(image: np.ndarray, mask: np.ndarray, box, size: int, origin: tuple[int, int] = (0, 0),
              margin: float = 0.2) -> np.ndarray:
    """The classifier's input for one item: a square around `box` (x0, y0, x1, y1 pixels) grown by
    `margin` of its side, resized to `size`, RGB plus the item's mask (255 inside), 4xSxS uint8.
    `mask` covers the image from `origin` (x, y) on: the whole image, or just the item's window.
    Outside the image is black."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + margin) + 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = image.shape[:2]
    # only the window the square covers is copied and warped, not the whole image
    wx0, wy0 = max(0, int(cx - side / 2) - 1), max(0, int(cy - side / 2) - 1)
    wx1, wy1 = min(w, int(cx + side / 2) + 2), min(h, int(cy + side / 2) + 2)
    window = np.zeros((wy1 - wy0, wx1 - wx0, 4), np.uint8)
    window[..., :3] = image[wy0:wy1, wx0:wx1]
    mx, my = origin
    ax0, ay0 = max(wx0, mx), max(wy0, my)
    ax1, ay1 = min(wx1, mx + mask.shape[1]), min(wy1, my + mask.shape[0])
    if ax1 > ax0 and ay1 > ay0:
        window[ay0 - wy0:ay1 - wy0, ax0 - wx0:ax1 - wx0, 3] = mask[ay0 - my:ay1 - my, ax0 - mx:ax1 - mx] * 255
    scale = size / side
    warp = np.array([[scale, 0, size / 2 - (cx - wx0) * scale], [0, scale, size / 2 - (cy - wy0) * scale]], np.float32)
    out = cv2.warpAffine(window, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return out.transpose(2, 0, 1)
