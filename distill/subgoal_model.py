"""The learned subgoal image model: (a camera's current frame, the subtask text) -> that camera's frame
when the subtask is done.

A conditional U-Net trained by regression (see docs/subgoals.md for why not diffusion or flow
matching): one network for every camera, told which camera it looks at by a learned embedding, and
told the subtask by its frozen all-MiniLM-L6-v2 sentence embedding; both enter every residual
block by FiLM (a per-channel scale and shift). It predicts the *change* from the current frame, so
an untrained model starts at the copy-the-current-frame baseline and only has to learn what moves.

For speed on a CPU the network works at half resolution: the S x S image is folded into
S/2 x S/2 x 12 (pixel unshuffle) on the way in and unfolded on the way out, so no convolution
runs at full resolution while no pixel is thrown away.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coaching.text_encoder import DIM as TEXT_DIM  # all-MiniLM-L6-v2: 384


@dataclass
class SubgoalModelConfig:
    cameras: list[str]
    image_size: int = 96
    text_dim: int = TEXT_DIM
    channels: tuple[int, ...] = (32, 64, 128)  # per U-Net level, from S/2 down
    cond_dim: int = 128
    attention_heads: int = 4  # self-attention at the bottleneck: things move across the whole image

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SubgoalModelConfig":
        d = dict(d)
        d["channels"] = tuple(d.get("channels", cls.channels))
        return cls(**d)


class FiLMResBlock(nn.Module):
    """Two 3x3 convolutions with a residual path; the condition scales and shifts the normalised features."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.film = nn.Linear(cond_dim, 2 * c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class Bottleneck(nn.Module):
    """Self-attention over the coarsest grid, the condition added as one more token."""

    def __init__(self, channels: int, cond_dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.cond_token = nn.Linear(cond_dim, channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        seq = self.norm(torch.cat([tokens, self.cond_token(cond)[:, None]], dim=1))
        out, _ = self.attn(seq[:, :-1], seq, seq, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class SubgoalUNet(nn.Module):
    def __init__(self, cfg: SubgoalModelConfig):
        super().__init__()
        if cfg.image_size % (2 ** len(cfg.channels)) != 0:
            raise ValueError(f"image_size {cfg.image_size} must be divisible by {2 ** len(cfg.channels)}")
        self.cfg = cfg
        ch = cfg.channels
        self.camera = nn.Embedding(len(cfg.cameras), cfg.cond_dim)
        self.text = nn.Sequential(nn.Linear(cfg.text_dim, cfg.cond_dim), nn.SiLU(), nn.Linear(cfg.cond_dim, cfg.cond_dim))
        self.stem = nn.Conv2d(12, ch[0], 3, padding=1)  # 3 colours x 2 x 2 folded pixels
        self.down_blocks = nn.ModuleList(FiLMResBlock(a, b, cfg.cond_dim) for a, b in zip((ch[0], *ch[:-1]), ch))
        self.downsample = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1) for c in ch)
        self.mid = FiLMResBlock(ch[-1], ch[-1], cfg.cond_dim)
        self.attention = Bottleneck(ch[-1], cfg.cond_dim, cfg.attention_heads)
        self.up_blocks = nn.ModuleList(FiLMResBlock(2 * c, c_out, cfg.cond_dim)
                                       for c, c_out in zip(reversed(ch), (*reversed(ch[:-1]), ch[0])))
        self.head = nn.Conv2d(ch[0], 12, 3, padding=1)
        nn.init.zeros_(self.head.weight)  # start exactly at the copy baseline
        nn.init.zeros_(self.head.bias)

    def forward(self, current: torch.Tensor, text: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """current (B, 3, S, S) in [0, 1], text (B, text_dim), camera (B,) long -> predicted (B, 3, S, S) in [0, 1]."""
        cond = F.silu(self.text(text) + self.camera(camera))
        h = self.stem(F.pixel_unshuffle(current * 2 - 1, 2))
        skips = []
        for block, down in zip(self.down_blocks, self.downsample):
            h = block(h, cond)
            skips.append(h)
            h = down(h)
        h = self.attention(self.mid(h, cond), cond)
        for block in self.up_blocks:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1), cond)
        change = F.pixel_shuffle(self.head(F.silu(h)), 2)
        return (current + change).clamp(0.0, 1.0)
