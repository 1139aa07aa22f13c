"""The learned detector behind the `Detector` seam: the embedded default's perception.

It owns running the networks (`distill/detector_model.py`) on camera images and decoding them
into detections. Every local maximum of the centre heatmap above `peak_threshold` is a proposal
(CenterNet's decoding: a 3x3 max-pool keeps the peaks); its box is the size read at the peak
around it, its colour the colour logits summed around it, its mask the item pixels of that colour
in the box. The classifier names each proposal's kind from its crop (`item_crop`) or rejects it;
proposals that get the same label merge when the smaller is at least `MERGE_FRACTION` of the
largest and near it (an item the arm cuts in two is still one item), else the best stands alone.
One detection per label per camera, because a label a coach types must name one item. Score: the
peak's heat times the kind's probability.
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


@dataclass(frozen=True)
class DecodeConfig:
    min_score: float = 0.15  # peak heat x kind probability
    peak_threshold: float = 0.1  # heatmap maxima below this are not proposals
    max_proposals: int = 40  # per image, the highest peaks
    item_threshold: float = 0.5  # a pixel is an item's above this probability (the mask)
    refine: float = 1.6  # a blob up to this many times the regressed size gives the box (0: never)


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
                    maps = self._predict(np.stack([images[c] for c in group]), h, w)
                    for i, cam in enumerate(group):
                        out += self._decode(cam, images[cam], {k: v[i] for k, v in maps.items()})
            finally:
                torch.set_num_threads(before)
        return sorted(out, key=lambda d: -d.score)

    def _predict(self, batch: np.ndarray, h: int, w: int) -> dict[str, np.ndarray]:
        """BxHxWx3 uint8 -> the segmenter's maps at half resolution as float32 numpy, {"centre":
        Bx1xH/2xW/2 heat in 0..1 (local maxima only, others 0), "size", "item" (probability), "colour"}."""
        torch, F = self._torch, self._torch.nn.functional
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
        ph, pw = (-h) % 16, (-w) % 16  # the network halves four times
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        with torch.inference_mode():
            out = decodable(self.net.segmenter(x))
            return {k: v[..., :(h + 1) // 2, :(w + 1) // 2].numpy() for k, v in out.items()}

    def _decode(self, camera: str, image: np.ndarray, maps: dict[str, np.ndarray]) -> list[Detection]:
        """Proposals become items; the classifier names each one's kind or rejects it; one detection
        per label."""
        props = proposals(maps, image.shape[:2], self.decode)
        if not props:
            return []
        torch = self._torch
        crops = np.stack([item_crop(image, r.mask, r.box, self.cfg.crop, r.origin) for r in props])
        with torch.inference_mode():
            kind_p = self.net.classifier(torch.from_numpy(crops).float().div_(255.0)).softmax(1).numpy()
        by_label: dict[str, list[tuple[Proposal, float]]] = {}
        for r, p in zip(props, kind_p):
            k = int(p.argmax())
            if k == len(self.cfg.kinds):  # the classifier's last class: not an item (a pad, the arm, a wall)
                continue
            by_label.setdefault(f"{self.cfg.colours[r.colour]} {self.cfg.kinds[k]}", []).append((r, r.heat * float(p[k])))
        out = []
        h, w = image.shape[:2]
        for label, parts in by_label.items():
            kept, score = _merge(parts)
            if score >= self.decode.min_score:
                mask = np.zeros((h, w), bool)
                for r in kept:
                    x0, y0 = r.origin
                    mask[y0:y0 + r.mask.shape[0], x0:x0 + r.mask.shape[1]] |= r.mask
                box = (min(r.box[0] for r in kept), min(r.box[1] for r in kept),
                       max(r.box[2] for r in kept), max(r.box[3] for r in kept))
                out.append(Detection(label, camera, box, score, mask))
        return out


@dataclass
class Proposal:
    """One heatmap peak: an item's centre, its box and its mask in the window at `origin`."""

    peak: tuple[int, int]  # row, column of the peak at half resolution
    heat: float  # the peak's value, 0..1
    colour: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    origin: tuple[int, int]  # x, y of the mask window's top-left pixel in the image
    mask: np.ndarray  # hxw bool over the window: the item pixels of its colour in the box

    @property
    def size(self) -> float:
        return max(1.0, (self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


def decodable(maps: dict) -> dict:
    """The segmenter's outputs (torch, Bx?xH/2xW/2) as `proposals` reads them: "centre" heat in 0..1
    with all but its 3x3 local maxima set to 0 (CenterNet's peak picking), "item" the probability of
    an item pixel (Bx1), "size" and "colour" as they are."""
    import torch
    import torch.nn.functional as F

    heat = torch.sigmoid(maps["centre"])
    heat = heat * (heat == F.max_pool2d(heat, 3, stride=1, padding=1))
    return {"centre": heat, "size": maps["size"], "item": maps["item"].softmax(1)[:, 1:], "colour": maps["colour"]}


def proposals(maps: dict, image_size: tuple[int, int], decode: DecodeConfig | None = None) -> list[Proposal]:
    """The proposals of one image from its half-resolution maps (`decodable`'s for one image, numpy):
    every kept heatmap peak above `peak_threshold`, highest first,
    at most `max_proposals`. `image_size` is (H, W) in pixels."""
    decode = decode or DecodeConfig()
    heat, size, item, colour = (np.asarray(maps[k]) for k in ("centre", "size", "item", "colour"))
    heat, item = heat[0], item[0]
    h, w = image_size
    hh, hw = heat.shape
    ys, xs = np.nonzero(heat > decode.peak_threshold)
    order = np.argsort(-heat[ys, xs])[:decode.max_proposals]
    colour_index = colour.argmax(0)
    fg = item > decode.item_threshold
    blobs: dict[int, tuple] = {}  # per colour: its connected item pixels, computed when first needed
    out = []
    for y, x in zip(ys[order], xs[order]):
        bw, bh = np.exp(np.clip(size[:, y, x], 0.0, 6.0))
        cx, cy = 2 * x + 1.0, 2 * y + 1.0  # the half-resolution pixel's centre in image pixels
        box = (max(0.0, cx - bw / 2), max(0.0, cy - bh / 2), min(float(w), cx + bw / 2), min(float(h), cy + bh / 2))
        # the colour most of the item pixels in the box have (a can's white lid is not its colour)
        ya, yb = int(box[1]) // 2, min(hh, int(np.ceil(box[3] / 2)))
        xa, xb = int(box[0]) // 2, min(hw, int(np.ceil(box[2] / 2)))
        votes = np.bincount(colour_index[ya:yb, xa:xb].ravel(), weights=item[ya:yb, xa:xb].ravel(),
                            minlength=len(colour))
        c = int(votes.argmax()) if votes.any() else int(colour[:, y, x].argmax())
        if c not in blobs:
            blobs[c] = cv2.connectedComponentsWithStats((fg & (colour_index == c)).astype(np.uint8), connectivity=8)[1:3]
        comp, stats = blobs[c]
        near = comp[max(0, y - 1):y + 2, max(0, x - 1):x + 2]
        blob = int(np.bincount(near[near > 0]).argmax()) if (near > 0).any() else 0
        if blob and decode.refine:
            # the item's own pixels give a tighter box than the regressed size, unless the blob is
            # something larger of the same colour it stands on (a block on the pad of its colour)
            bx, by, bbw, bbh = stats[blob][:4]
            if 0.5 * bw <= 2 * bbw <= decode.refine * bw and 0.5 * bh <= 2 * bbh <= decode.refine * bh:
                box = (2.0 * bx, 2.0 * by, min(float(w), 2.0 * (bx + bbw)), min(float(h), 2.0 * (by + bbh)))
        # the mask: item pixels of this colour inside the box, at half resolution, doubled back
        ya, yb = int(box[1]) // 2, min(hh, int(np.ceil(box[3] / 2)))
        xa, xb = int(box[0]) // 2, min(hw, int(np.ceil(box[2] / 2)))
        half = fg[ya:yb, xa:xb] & (colour_index[ya:yb, xa:xb] == c)
        mask = half.repeat(2, 0).repeat(2, 1)[:h - 2 * ya, :w - 2 * xa]  # 2x upsampling; np.kron took 12x as long
        out.append(Proposal((int(y), int(x)), float(heat[y, x]), c, box, (2 * xa, 2 * ya), mask))
    return out


def _merge(parts: list[tuple[Proposal, float]]) -> tuple[list[Proposal], float]:
    """One label's proposals as one item: the largest, plus the others at least `MERGE_FRACTION` of
    its size that lie within one item-width of it (an item the arm cuts in two); the rest are dropped."""
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
