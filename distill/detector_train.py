"""Training the learned detector on labelled frames, read top to bottom.

The frames come from the caller (`coachlab train-detector` passes the sim's synthetic renders,
`sim/synthetic_scenes.py`); each has `images` ({camera: HxWx3 uint8}) and `views` (items with
`label` "colour kind", `camera`, `box`, `mask` HxW bool, `visible_fraction`). Steps: rasterise
the labels into per-pixel item and colour targets at the segmenter's half resolution and crop
every item view for the kind classifier; train both with one AdamW and a one-cycle schedule on
cross-entropy (per pixel for the segmenter, background down-weighted: items are a few percent of
the pixels; per crop for the classifier); score held-out frames with
`distill/detector_metrics.py`; save the checkpoint (`distill/checkpoint.py`, format "detector")
with the training record.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from distill.checkpoint import save_checkpoint
from distill.detector_metrics import DetectionScore
from distill.learned_detector import FORMAT, item_crop, item_regions

BACKGROUND_WEIGHT = 0.1  # items cover ~2% of the pixels; unweighted, "all background" is a strong minimum


@dataclass
class DetectorTrainConfig:
    steps: int = 2000
    batch_size: int = 32  # camera image windows per step (the segmenter)
    window: int = 128  # side of the window taken from each image (pixels, a multiple of 8)
    crop_batch_size: int = 256  # item crops per step (the classifier)
    mine_at: float = 0.5  # fraction of the steps after which the segmenter's proposals join the crops
    lr: float = 4e-3
    weight_decay: float = 1e-4
    seed: int = 0
    progress: bool = True


def _vocabulary(frames: Sequence) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(kinds, colours) from every label "colour kind" the frames hold, sorted."""
    labels = {v.label for f in frames for v in f.views}
    if not labels:
        raise ValueError("The training frames hold no labelled items; nothing to learn.")
    return (tuple(sorted({l.split(" ", 1)[1] for l in labels})), tuple(sorted({l.split(" ", 1)[0] for l in labels})))


def rasterise(frames: Sequence, kinds: Sequence[str], colours: Sequence[str]):
    """The segmenter's data: images Nx3xHxW uint8 and targets at half resolution, item NxH/2xW/2
    (1 on an item), colour (index, where an item is) and kind (index + 1, 0 elsewhere: for mining
    the classifier's examples), for every camera image of every frame."""
    colour_index = {c: i for i, c in enumerate(colours)}
    kind_index = {k: i + 1 for i, k in enumerate(kinds)}
    images, item_t, colour_t, kind_t = [], [], [], []
    for f in frames:
        for cam, image in f.images.items():
            h, w = image.shape[:2]
            item_map = np.zeros((h, w), np.uint8)
            colour_map = np.zeros((h, w), np.uint8)
            kind_map = np.zeros((h, w), np.uint8)
            for v in f.views:
                if v.camera == cam:
                    colour, kind = v.label.split(" ", 1)
                    item_map[v.mask] = 1
                    colour_map[v.mask] = colour_index[colour]
                    kind_map[v.mask] = kind_index[kind]
            images.append(image.transpose(2, 0, 1))
            for out, full in ((item_t, item_map), (colour_t, colour_map), (kind_t, kind_map)):
                out.append(cv2.resize(full, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST))
    return np.stack(images), np.stack(item_t), np.stack(colour_t), np.stack(kind_t)


def mine(net, images, kind_t, crop: int, batch: int = 32):
    """The classifier's examples as the segmenter proposes them: every region `item_regions` finds in
    the training images, labelled with the kind most of it covers, or "not an item" (index K) when
    less than a fifth of it lies on any item; regions in between are left out. Nx4xSxS uint8, N."""
    import torch
    import torch.nn.functional as F

    num_kinds = len(net.cfg.kinds)
    out, labels = [], []
    net.eval()
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = images[start:start + batch].float().div_(255.0)
            item, colour = net.segmenter(x)
            item = F.interpolate(item, scale_factor=2, mode="bilinear", align_corners=False).softmax(1)[:, 1].numpy()
            colour = F.interpolate(colour, scale_factor=2, mode="nearest").argmax(1).numpy()
            for i in range(len(x)):
                image = images[start + i].numpy().transpose(1, 2, 0)
                truth = np.kron(kind_t[start + i].numpy(), np.ones((2, 2), np.uint8))  # back to full resolution
                for r in item_regions(item[i], colour[i]):
                    x0, y0 = r.origin
                    under = truth[y0:y0 + r.mask.shape[0], x0:x0 + r.mask.shape[1]][r.mask]
                    on_items = under[under > 0]
                    if len(on_items) < 0.2 * len(under):
                        label = num_kinds
                    elif len(on_items) > 0.5 * len(under):
                        label = int(np.bincount(on_items).argmax()) - 1
                    else:
                        continue
                    out.append(item_crop(image, r.mask, r.box, crop, r.origin))
                    labels.append(label)
    net.train()
    if not out:
        return np.zeros((0, 4, crop, crop), np.uint8), np.zeros(0, np.int64)
    return np.stack(out), np.array(labels, dtype=np.int64)


def crops(frames: Sequence, kinds: Sequence[str], size: int, rng: np.random.Generator, copies: int = 2):
    """The classifier's data: `copies` crops per item view (its box jittered by up to 10% of its side
    per edge, as a predicted region is not the true one), Nx4xSxS uint8, and kind indices N."""
    kind_index = {k: i for i, k in enumerate(kinds)}
    out, labels = [], []
    for f in frames:
        for v in f.views:
            x0, y0, x1, y1 = v.box
            side = max(x1 - x0, y1 - y0)
            for _ in range(copies):
                jitter = rng.uniform(-0.1, 0.1, 4) * side
                box = (x0 + jitter[0], y0 + jitter[1], x1 + jitter[2], y1 + jitter[3])
                out.append(item_crop(f.images[v.camera], v.mask, box, size))
                labels.append(kind_index[v.label.split(" ", 1)[1]])
    return np.stack(out), np.array(labels, dtype=np.int64)


def evaluate(detector, frames: Iterable, min_visible: float = 0.5) -> dict:
    """Precision, recall and IoU of `detector` on labelled frames, per camera, and ms per frame."""
    score = DetectionScore(min_visible=min_visible)
    times = []
    for f in frames:
        start = time.perf_counter()
        found = detector.detect(f.images)
        times.append(time.perf_counter() - start)
        for cam in f.images:
            score.add(cam, [d for d in found if d.camera == cam], [v for v in f.views if v.camera == cam])
    return {**score.summary(), "ms_per_frame_median": round(1000 * float(np.median(times)), 2) if times else None}


def train_detector(train_frames: Sequence, val_frames: Sequence, out: str | Path,
                   config: DetectorTrainConfig | None = None, extra: dict | None = None) -> dict:
    """Train on `train_frames`, score on `val_frames`, save to `out`; returns the training record."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from distill.detector_model import DetectorConfig, DetectorNet
    from distill.learned_detector import LearnedDetector
    from distill.checkpoint import Checkpoint

    config = config or DetectorTrainConfig()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    start = time.perf_counter()

    # 1. data: every camera image is a segmenter sample, every item view in it a classifier sample
    kinds, colours = _vocabulary(train_frames)
    net = DetectorNet(DetectorConfig(kinds=kinds, colours=colours))
    images, item_t, colour_t, kind_t = (torch.from_numpy(a) for a in rasterise(train_frames, kinds, colours))
    crop_x, crop_y = (torch.from_numpy(a) for a in crops(train_frames, kinds, net.cfg.crop, rng))

    # 2. one optimiser over both stages; each step one batch of images and one of crops
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.15)
    item_weight = torch.tensor([BACKGROUND_WEIGHT, 1.0])

    # 3. the loop
    net.train()
    losses = []
    bar = tqdm(range(config.steps), desc="training the detector", unit="step", disable=not config.progress)
    mined = negatives = 0
    for step in bar:
        if step == int(config.mine_at * config.steps):  # add the segmenter's own proposals, false alarms included
            mx, my = mine(net, images, kind_t, net.cfg.crop)
            crop_x, crop_y = torch.cat([crop_x, torch.from_numpy(mx)]), torch.cat([crop_y, torch.from_numpy(my)])
            mined = len(my)
            negatives = int((my == len(kinds)).sum())
        idx = torch.from_numpy(rng.integers(0, len(images), config.batch_size))
        # a random window of every image: items are small, so a window holds enough context, at a
        # fraction of the cost of the whole image (the network is fully convolutional)
        size = config.window
        y0 = int(rng.integers(0, images.shape[-2] - size + 1)) // 2 * 2
        x0 = int(rng.integers(0, images.shape[-1] - size + 1)) // 2 * 2
        x = images[idx, :, y0:y0 + size, x0:x0 + size].float().div_(255.0)
        half = (slice(y0 // 2, (y0 + size) // 2), slice(x0 // 2, (x0 + size) // 2))
        it, ct = item_t[idx][:, half[0], half[1]].long(), colour_t[idx][:, half[0], half[1]].long()
        # light jitter: brightness and contrast per image (hue would change the colour labels)
        gain = torch.empty(len(idx), 1, 1, 1).uniform_(0.8, 1.2)
        bias = torch.empty(len(idx), 1, 1, 1).uniform_(-0.06, 0.06)
        x = (x * gain + bias).clamp_(0, 1)
        if rng.random() < 0.5:  # mirror: what a thing is does not depend on left and right
            x, it, ct = x.flip(-1), it.flip(-1), ct.flip(-1)
        item_logits, colour_logits = net.segmenter(x)
        loss_item = F.cross_entropy(item_logits, it, weight=item_weight)
        fg = it > 0
        loss_colour = F.cross_entropy(colour_logits, ct, reduction="none")[fg].mean() if fg.any() else 0.0 * loss_item

        cidx = torch.from_numpy(rng.integers(0, len(crop_x), config.crop_batch_size))
        cx = crop_x[cidx].float().div_(255.0)
        cx[:, :3] = (cx[:, :3] * torch.empty(len(cidx), 1, 1, 1).uniform_(0.8, 1.2)).clamp_(0, 1)
        if rng.random() < 0.5:
            cx = cx.flip(-1)
        loss_kind = F.cross_entropy(net.classifier(cx), crop_y[cidx])

        loss = loss_item + loss_colour + loss_kind
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append([float(loss_item.detach()), float(loss_colour.detach()), float(loss_kind.detach())])
        if step % 20 == 0:
            recent = np.mean(losses[-20:], axis=0)
            bar.set_postfix(item=f"{recent[0]:.3f}", colour=f"{recent[1]:.3f}", kind=f"{recent[2]:.3f}")
    net.eval()
    train_minutes = (time.perf_counter() - start) / 60

    # 4. validation and the checkpoint
    detector = LearnedDetector(Checkpoint(net, net.cfg, {}, str(out)))
    metrics = evaluate(detector, val_frames) if val_frames else {}
    first, last = np.mean(losses[:20], axis=0), np.mean(losses[-20:], axis=0)
    record = {"config": asdict(config), "train_images": int(len(images)), "train_crops": int(len(crop_x)),
              "mined_crops": mined, "mined_not_items": negatives,
              "val_frames": len(val_frames),
              "loss_first": {k: round(float(v), 4) for k, v in zip(("item", "colour", "kind"), first)},
              "loss_last": {k: round(float(v), 4) for k, v in zip(("item", "colour", "kind"), last)},
              "train_loop_minutes": round(train_minutes, 2), "validation": metrics, **(extra or {})}
    save_checkpoint(out, net, record, FORMAT)
    return record
