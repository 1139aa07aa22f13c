"""Training the learned detector on labelled frames, read top to bottom.

The frames come from the caller (`coachlab train-detector` passes the sim's synthetic renders,
`sim/synthetic_scenes.py`); each has `images` ({camera: HxWx3 uint8}) and `views` (items with
`label` "colour kind", `camera`, `box`, `mask` HxW bool, `visible_fraction`). Steps: rasterise
the labels into targets at the segmenter's half resolution (item and colour per pixel, a Gaussian
at each item's centre and its log size around it) and crop every item view for the kind
classifier; train both with one AdamW and a one-cycle schedule (cross-entropy per pixel for item
and colour, background down-weighted as items are a few percent of the pixels; CenterNet's focal
loss on the centres and L1 on the sizes; cross-entropy per crop for the classifier, whose crops
from 40% on include the first stage's own proposals, false alarms among them); then the classifier
alone on the finished first stage's proposals (the segmenter frozen); score held-out frames with
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
from distill.learned_detector import FORMAT, decodable, item_crop, proposals

BACKGROUND_WEIGHT = 0.1  # items cover ~2% of the pixels; unweighted, "all background" is a strong minimum
LOSSES = ("item", "colour", "kind", "centre", "size")
MIN_CENTRE_PIXELS = 4  # an item showing fewer pixels gets no centre: nothing to find


@dataclass
class DetectorTrainConfig:
    steps: int = 2000
    batch_size: int = 32  # camera image windows per step (the segmenter)
    window: int = 128  # side of the window taken from each image (pixels, a multiple of 8)
    crop_batch_size: int = 256  # item crops per step (the classifier)
    # fractions of the steps at which the first stage's proposals (re)join the crops: a second round
    # shows the classifier the proposals of the trained first stage, not of a half-trained one
    mine_at: tuple[float, ...] = (0.4, 0.75)
    # then the classifier alone on the finished first stage's proposals (the segmenter frozen), as
    # Faster R-CNN's alternating training finishes its second stage on the final proposals: the
    # joint loop's 2000 steps left the kind loss at 0.25, and 1500 more took base precision and
    # recall on 180 family scenes from 0.919 / 0.856 to 0.937 / 0.896 (docs/perception.md); 3000
    # more, no better (0.929 / 0.896). None: 0.75 x `steps`, so a short test run stays short (with
    # `steps` 0, retraining only the classifier: 0.75 x the default 2000).
    classifier_steps: int | None = None
    lr: float = 4e-3
    weight_decay: float = 1e-4
    seed: int = 0
    progress: bool = True

    @property
    def classifier_phase_steps(self) -> int:
        """`classifier_steps`, or when None 0.75 x `steps` (x the default 2000 when `steps` is 0)."""
        if self.classifier_steps is not None:
            return self.classifier_steps
        return int(0.75 * (self.steps or DetectorTrainConfig.steps))


def _vocabulary(frames: Sequence) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(kinds, colours) from every label "colour kind" the frames hold, sorted."""
    labels = {v.label for f in frames for v in f.views}
    if not labels:
        raise ValueError("The training frames hold no labelled items; nothing to learn.")
    return (tuple(sorted({l.split(" ", 1)[1] for l in labels})), tuple(sorted({l.split(" ", 1)[0] for l in labels})))


def rasterise(frames: Sequence, kinds: Sequence[str], colours: Sequence[str]):
    """The segmenter's data: images Nx3xHxW uint8 and targets at half resolution: item NxH/2xW/2 (1 on
    an item), colour (index, where an item is), kind (index + 1, 0 elsewhere: for mining the
    classifier's examples), centre (float16, a Gaussian peaking at 1 on each item's centre) and size
    (float16 Nx2xH/2xW/2, log width and height of the item whose Gaussian is strongest there), for
    every camera image of every frame."""
    colour_index = {c: i for i, c in enumerate(colours)}
    kind_index = {k: i + 1 for i, k in enumerate(kinds)}
    images, item_t, colour_t, kind_t, centre_t, size_t = [], [], [], [], [], []
    for f in frames:
        for cam, image in f.images.items():
            h, w = image.shape[:2]
            item_map = np.zeros((h, w), np.uint8)
            colour_map = np.zeros((h, w), np.uint8)
            kind_map = np.zeros((h, w), np.uint8)
            centre = np.zeros((h // 2, w // 2), np.float32)
            size = np.zeros((2, h // 2, w // 2), np.float32)
            for v in f.views:
                if v.camera == cam:
                    colour, kind = v.label.split(" ", 1)
                    item_map[v.mask] = 1
                    colour_map[v.mask] = colour_index[colour]
                    kind_map[v.mask] = kind_index[kind]
                    if int(v.mask.sum()) >= MIN_CENTRE_PIXELS:
                        _splat(centre, size, v.box)
            images.append(image.transpose(2, 0, 1))
            for out, full in ((item_t, item_map), (colour_t, colour_map), (kind_t, kind_map)):
                out.append(cv2.resize(full, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST))
            centre_t.append(centre.astype(np.float16))
            size_t.append(size.astype(np.float16))
    return (np.stack(images), np.stack(item_t), np.stack(colour_t), np.stack(kind_t), np.stack(centre_t),
            np.stack(size_t))


def _splat(centre: np.ndarray, size: np.ndarray, box) -> None:
    """Draw one item into the half-resolution targets: a Gaussian of peak 1 at its box centre (sigma a
    sixth of its mean side, as CenterNet's radius rule gives for small boxes) and its log size where
    this Gaussian beats what is there."""
    x0, y0, x1, y1 = (c / 2 for c in box)
    cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
    sigma = max(0.7, np.sqrt(max(x1 - x0, 1) * max(y1 - y0, 1)) / 6)
    r = int(3 * sigma) + 1
    h, w = centre.shape
    ya, yb, xa, xb = max(0, cy - r), min(h, cy + r + 1), max(0, cx - r), min(w, cx + r + 1)
    if ya >= yb or xa >= xb:
        return
    yy, xx = np.mgrid[ya:yb, xa:xb]
    g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
    win = centre[ya:yb, xa:xb]
    stronger = g > win
    win[stronger] = g[stronger]
    size[0, ya:yb, xa:xb][stronger] = np.log(max(box[2] - box[0], 1.0))
    size[1, ya:yb, xa:xb][stronger] = np.log(max(box[3] - box[1], 1.0))


def centre_loss(logits, target):
    """CenterNet's penalty-reduced focal loss (Zhou et al. 2019, eq. 1; alpha 2, beta 4): logits and
    target Bx1xHxW (target 1 at centres, a Gaussian around them), summed and divided by the number
    of centres."""
    import torch
    import torch.nn.functional as F

    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target >= 0.999
    pos_loss = -F.logsigmoid(logits)[pos] * (1 - p[pos]) ** 2
    neg = ~pos
    neg_loss = -F.logsigmoid(-logits)[neg] * p[neg] ** 2 * (1 - target[neg]) ** 4
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def mine(net, images, kind_t, crop: int, batch: int = 32):
    """The classifier's examples as the first stage proposes them: every proposal `proposals` finds in
    the training images, labelled with the kind of the item under its centre, or "not an item"
    (index K) when no item pixel lies within a pixel of it. Nx4xSxS uint8, N."""
    import torch

    num_kinds = len(net.cfg.kinds)
    out, labels = [], []
    net.eval()
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = images[start:start + batch].float().div_(255.0)
            maps = {k: v.numpy() for k, v in decodable(net.segmenter(x)).items()}
            for i in range(len(x)):
                image = images[start + i].numpy().transpose(1, 2, 0)
                truth = kind_t[start + i].numpy()  # half resolution
                for prop in proposals({k: v[i] for k, v in maps.items()}, image.shape[:2]):
                    hy, hx = prop.peak
                    near = truth[max(0, hy - 1):hy + 2, max(0, hx - 1):hx + 2]
                    if truth[hy, hx] > 0:
                        label = int(truth[hy, hx]) - 1
                    elif not near.any():
                        label = num_kinds
                    else:
                        continue
                    out.append(item_crop(image, prop.mask, prop.box, crop, prop.origin))
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


def _kind_loss(classifier, crop_x, crop_y, batch: int, rng: np.random.Generator):
    """The classifier's cross-entropy on `batch` random crops (uint8 Nx4xSxS, kinds N), with brightness
    jitter on the colour channels and a random mirror."""
    import torch
    import torch.nn.functional as F

    cidx = torch.from_numpy(rng.integers(0, len(crop_x), batch))
    cx = crop_x[cidx].float().div_(255.0)
    cx[:, :3] = (cx[:, :3] * torch.empty(len(cidx), 1, 1, 1).uniform_(0.8, 1.2)).clamp_(0, 1)
    if rng.random() < 0.5:
        cx = cx.flip(-1)
    return F.cross_entropy(classifier(cx), crop_y[cidx])


def train_detector(train_frames: Sequence, val_frames: Sequence, out: str | Path,
                   config: DetectorTrainConfig | None = None, extra: dict | None = None,
                   init=None) -> dict:
    """Train on `train_frames`, score on `val_frames`, save to `out`; returns the training record.
    `init`, a `DetectorNet` (a loaded detector's `.net`), is trained on instead of a new network: its
    labels must cover the frames' (ValueError otherwise). With `steps` 0 only the classifier phase runs."""
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
    if init is None:
        net = DetectorNet(DetectorConfig(kinds=kinds, colours=colours))
    elif set(kinds) <= set(init.cfg.kinds) and set(colours) <= set(init.cfg.colours):
        net, kinds, colours = init, init.cfg.kinds, init.cfg.colours
    else:
        raise ValueError(f"The frames hold labels the detector to start from does not know (kinds {kinds}, colours "
                         f"{colours}); train a new one without --init.")
    images, item_t, colour_t, kind_t, centre_t, size_t = (
        torch.from_numpy(a) for a in rasterise(train_frames, kinds, colours))
    true_x, true_y = (torch.from_numpy(a) for a in crops(train_frames, kinds, net.cfg.crop, rng))
    crop_x, crop_y = true_x, true_y

    # 2. one optimiser over both stages; each step one batch of images and one of crops
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # (at least one step: the schedule refuses zero, and `--init` may skip this loop)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=max(1, config.steps),
                                                pct_start=0.15)
    item_weight = torch.tensor([BACKGROUND_WEIGHT, 1.0])

    # 3. the loop
    net.train()
    losses = []
    bar = tqdm(range(config.steps), desc="training the detector", unit="step",
               disable=not config.progress or not config.steps)
    mined = negatives = 0
    for step in bar:
        if step in {int(f * config.steps) for f in config.mine_at}:  # the first stage's proposals, false alarms included
            mx, my = mine(net, images, kind_t, net.cfg.crop)
            crop_x, crop_y = torch.cat([true_x, torch.from_numpy(mx)]), torch.cat([true_y, torch.from_numpy(my)])
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
        ht = centre_t[idx][:, None, half[0], half[1]].float()
        st = size_t[idx][:, :, half[0], half[1]].float()
        # light jitter: brightness and contrast per image (hue would change the colour labels)
        gain = torch.empty(len(idx), 1, 1, 1).uniform_(0.8, 1.2)
        bias = torch.empty(len(idx), 1, 1, 1).uniform_(-0.06, 0.06)
        x = (x * gain + bias).clamp_(0, 1)
        if rng.random() < 0.5:  # mirror: what a thing is does not depend on left and right
            x, it, ct, ht, st = x.flip(-1), it.flip(-1), ct.flip(-1), ht.flip(-1), st.flip(-1)
        maps = net.segmenter(x)
        loss_item = F.cross_entropy(maps["item"], it, weight=item_weight)
        fg = it > 0
        loss_colour = F.cross_entropy(maps["colour"], ct, reduction="none")[fg].mean() if fg.any() else 0.0 * loss_item
        loss_centre = centre_loss(maps["centre"], ht)
        # the size is read at a peak: learn it where the item's Gaussian is high, weighted by it
        near = ht > 0.3
        loss_size = (F.l1_loss(maps["size"], st, reduction="none") * ht)[near.expand_as(st)].sum() / \
            ht[near].sum().clamp(min=1)

        loss_kind = _kind_loss(net.classifier, crop_x, crop_y, config.crop_batch_size, rng)

        loss = loss_item + loss_colour + loss_kind + loss_centre + loss_size
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append([float(v.detach()) for v in (loss_item, loss_colour, loss_kind, loss_centre, loss_size)])
        if step % 20 == 0:
            recent = np.mean(losses[-20:], axis=0)
            bar.set_postfix(**{k: f"{v:.3f}" for k, v in zip(LOSSES, recent)})
    # 4. the classifier alone on the final proposals
    kind_losses = []
    classifier_steps = config.classifier_phase_steps
    if classifier_steps:
        mx, my = mine(net, images, kind_t, net.cfg.crop)
        crop_x, crop_y = torch.cat([true_x, torch.from_numpy(mx)]), torch.cat([true_y, torch.from_numpy(my)])
        mined, negatives = len(my), int((my == len(kinds)).sum())
        opt = torch.optim.AdamW(net.classifier.parameters(), lr=config.lr / 2, weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr / 2, total_steps=classifier_steps,
                                                    pct_start=0.1)
        bar = tqdm(range(classifier_steps), desc="training the kind classifier", unit="step",
                   disable=not config.progress)
        for step in bar:
            loss_kind = _kind_loss(net.classifier, crop_x, crop_y, config.crop_batch_size, rng)
            opt.zero_grad(set_to_none=True)
            loss_kind.backward()
            opt.step()
            sched.step()
            kind_losses.append(float(loss_kind.detach()))
            if step % 20 == 0:
                bar.set_postfix(kind=f"{np.mean(kind_losses[-20:]):.3f}")
    net.eval()
    train_minutes = (time.perf_counter() - start) / 60

    # 5. validation and the checkpoint
    detector = LearnedDetector(Checkpoint(net, net.cfg, {}, str(out)))
    metrics = evaluate(detector, val_frames) if val_frames else {}
    first, last = (np.mean(losses[:20], axis=0), np.mean(losses[-20:], axis=0)) if losses else ([], [])
    record = {"config": asdict(config), "train_images": int(len(images)), "train_crops": int(len(crop_x)),
              "mined_crops": mined, "mined_not_items": negatives,
              "val_frames": len(val_frames),
              "loss_first": {k: round(float(v), 4) for k, v in zip(LOSSES, first)},
              "loss_last": {k: round(float(v), 4) for k, v in zip(LOSSES, last)},
              "kind_loss_last_classifier_only": round(float(np.mean(kind_losses[-20:])), 4) if kind_losses else None,
              "train_loop_minutes": round(train_minutes, 2), "validation": metrics, **(extra or {})}
    save_checkpoint(out, net, record, FORMAT)
    return record
