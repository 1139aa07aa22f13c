"""The learned detector's networks, trained from scratch: a centre-point network that finds items,
their extent and colour, and a classifier that names the kind of each item it found.

Two stages, as in two-stage detectors (R-CNN: proposals, then a classifier on each crop):
- `Segmenter`: a small fully convolutional net over the whole image, Bx3xHxW float in [0, 1]
  (H, W divisible by 8) -> at half resolution (H/2 x W/2): `centre` logits Bx1 (a heatmap peaking
  at each item's centre, CenterNet: Zhou et al. 2019, "Objects as Points"), `size` Bx2 (log box
  width and height in pixels, read at a peak), `item` logits Bx2 (background / item pixel: the
  detection's mask) and `colour` logits BxC. A stride-2 stem, stride-2 stages at 1/4, 1/8 and
  1/16 (context: a pad and a plate differ only in their outline), an FPN-style top-down path (1x1
  laterals added to the upsampled coarser level, Lin et al. 2017) back to 1/2. Centres rather
  than connected item pixels, because a block on the pad of its colour is one blob of that colour.
- `KindClassifier`: each proposal cropped square around its box, resized to `crop` pixels, with
  its mask as a fourth channel, Nx4xSxS -> logits Nx(K+1), the kinds and "not an item" (the first
  stage's false alarms on pads, the arm or walls, mined in training). Kind is a matter of shape, and
  an item is 10 px in the base camera and 150 px in the wrist camera: a crop brings both to one
  scale, which a per-pixel head over the whole image did not learn in the same training time.
`DetectorNet` holds both, so one checkpoint carries the detector. Why this design and not the
frozen EfficientNet-Lite0, with the numbers that decided it: docs/perception.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DetectorConfig:
    kinds: tuple[str, ...]  # the label vocabulary: kind logit k is kinds[k]
    colours: tuple[str, ...]  # colour logit c is colours[c]; a label reads "colour kind"
    widths: tuple[int, ...] = (24, 40, 64, 64)  # segmenter channels at 1/2, 1/4, 1/8, 1/16
    neck: int = 32  # channels of the segmenter's top-down path
    crop: int = 32  # the classifier's input side (pixels)
    crop_widths: tuple[int, int, int] = (24, 48, 96)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DetectorConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Segmenter(nn.Module):
    def __init__(self, config: DetectorConfig):
        super().__init__()
        w1, w2, w3, w4 = config.widths
        self.stem = _conv(3, w1, 2)  # 1/2
        self.stage2 = nn.Sequential(_conv(w1, w2, 2), _conv(w2, w2))  # 1/4
        self.stage3 = nn.Sequential(_conv(w2, w3, 2), _conv(w3, w3))  # 1/8
        self.stage4 = nn.Sequential(_conv(w3, w4, 2), _conv(w4, w4))  # 1/16: context
        self.lateral = nn.ModuleList(nn.Conv2d(w, config.neck, 1) for w in (w1, w2, w3, w4))
        self.smooth = nn.ModuleList(_conv(config.neck, config.neck) for _ in range(2))  # at 1/8 and 1/4
        self.centre = nn.Conv2d(config.neck, 1, 1)
        self.size = nn.Conv2d(config.neck, 2, 1)
        self.item = nn.Conv2d(config.neck, 2, 1)
        self.colour = nn.Conv2d(config.neck, len(config.colours), 1)
        nn.init.constant_(self.centre.bias, -2.19)  # a prior of 0.1 on every pixel (focal loss, Lin et al. 2017)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images Bx3xHxW in [0, 1] -> {"centre": Bx1, "size": Bx2, "item": Bx2, "colour": BxC}, each
        at H/2 x W/2."""
        c1 = self.stem(images - 0.5)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        c4 = self.stage4(c3)
        p = self.lateral[3](c4)
        for level, (c, smooth) in enumerate(((c3, self.smooth[0]), (c2, self.smooth[1]))):
            p = smooth(F.interpolate(p, size=c.shape[-2:], mode="nearest") + self.lateral[2 - level](c))
        # at 1/2 the heads read the sum directly: a 3x3 conv there would double the cost
        p = F.relu(F.interpolate(p, size=c1.shape[-2:], mode="nearest") + self.lateral[0](c1))
        return {"centre": self.centre(p), "size": self.size(p), "item": self.item(p), "colour": self.colour(p)}


class KindClassifier(nn.Module):
    def __init__(self, config: DetectorConfig):
        super().__init__()
        a, b, c = config.crop_widths
        self.features = nn.Sequential(_conv(4, a), nn.MaxPool2d(2), _conv(a, b), nn.MaxPool2d(2), _conv(b, c),
                                      nn.MaxPool2d(2), _conv(c, c))
        self.head = nn.Linear(c, len(config.kinds) + 1)  # the last class: not an item

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """crops Nx4xSxS (RGB in [0, 1] and the item's mask) -> logits Nx(K+1): the kinds, then "not an item"."""
        x = self.features(crops - 0.5)
        return self.head(x.mean(dim=(2, 3)))


class DetectorNet(nn.Module):
    """Both stages under one config (what a checkpoint holds)."""

    def __init__(self, config: DetectorConfig):
        super().__init__()
        self.cfg = config
        self.segmenter = Segmenter(config)
        self.classifier = KindClassifier(config)
