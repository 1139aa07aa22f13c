"""Situations as tensors, and the objective.

`to_tensors` stacks `Situation`s (`distill/situations.py`) into a `Tensors` the network
(`distill/model.py`) takes batch by batch; `policy_loss` is the objective: cross-entropy of the
next subtask (group and item) on the situations that have a target, plus binary cross-entropy of
the finished head on those that have a label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from coaching.text_encoder import DIM as TEXT_DIM
from distill.features import MAX_TRACKS


@dataclass
class Tensors:
    context: torch.Tensor  # (N, C)
    held: torch.Tensor  # (N, 384)
    groups: torch.Tensor  # (N, G, 2)
    tracks: torch.Tensor  # (N, S, F)
    track_label_ids: torch.Tensor  # (N, S) rows of `label_emb`
    track_mask: torch.Tensor  # (N, S) bool
    active: torch.Tensor  # (N, F)
    target: torch.Tensor  # (N,) long, -1: none
    finished: torch.Tensor  # (N,) float, nan: none
    label_emb: torch.Tensor  # (L, 384)
    kinds: list[str]  # (N,) switch | continue | waiting | done

    def __len__(self) -> int:
        return len(self.target)

    def batch(self, idx: torch.Tensor, label_dropout: float = 0.0, metadata_dropout: float = 0.0,
              metadata_slice: slice | None = None) -> tuple[torch.Tensor, ...]:
        """The network's inputs for the rows `idx`; in training, each item label's embedding is zeroed
        with p = `label_dropout` (so unseen colour x kind pairs are scored by what the memory says of
        them) and the metadata prompt's with p = `metadata_dropout` (pi0.7's prompt dropout)."""
        context = self.context[idx]
        labels = self.label_emb[self.track_label_ids[idx]]
        if label_dropout > 0:
            labels = labels * (torch.rand(labels.shape[:2]) >= label_dropout).unsqueeze(-1)
        if metadata_dropout > 0 and metadata_slice is not None:
            context = context.clone()
            drop = torch.rand(len(idx)) < metadata_dropout
            context[drop, metadata_slice] = 0.0
        return (context, self.held[idx], self.groups[idx], self.tracks[idx], labels, self.track_mask[idx],
                self.active[idx])


def to_tensors(situations: list, track_dim: int) -> Tensors:
    """Stack situations (tracks padded to `MAX_TRACKS`); item labels are embedded once each."""
    from coaching.text_encoder import default_encoder

    n = len(situations)
    labels = sorted({l for s in situations for l in s.features.track_labels})
    label_row = {l: i + 1 for i, l in enumerate(labels)}  # row 0: padding
    label_emb = np.zeros((len(labels) + 1, TEXT_DIM), np.float32)
    if labels:
        label_emb[1:] = default_encoder().encode(labels)
    G = situations[0].features.groups.shape[0] if n else 0
    tracks = np.zeros((n, MAX_TRACKS, track_dim), np.float32)
    ids = np.zeros((n, MAX_TRACKS), np.int64)
    mask = np.zeros((n, MAX_TRACKS), bool)
    for i, s in enumerate(situations):
        k = len(s.features.track_labels)
        if k:
            tracks[i, :k] = s.features.tracks
            ids[i, :k] = [label_row[l] for l in s.features.track_labels]
            mask[i, :k] = True
    return Tensors(
        context=torch.from_numpy(np.stack([s.features.context for s in situations])) if n else torch.zeros(0, 1),
        held=torch.from_numpy(np.stack([s.features.held for s in situations])) if n else torch.zeros(0, TEXT_DIM),
        groups=torch.from_numpy(np.stack([s.features.groups for s in situations])) if n else torch.zeros(0, G, 2),
        tracks=torch.from_numpy(tracks), track_label_ids=torch.from_numpy(ids), track_mask=torch.from_numpy(mask),
        active=torch.from_numpy(np.stack([s.features.active for s in situations])) if n else torch.zeros(0, track_dim),
        target=torch.tensor([-1 if s.target is None else s.target for s in situations], dtype=torch.long),
        finished=torch.tensor([np.nan if s.finished is None else s.finished for s in situations], dtype=torch.float32),
        label_emb=torch.from_numpy(label_emb), kinds=[s.kind for s in situations])


def policy_loss(next_logits: torch.Tensor, finished_logit: torch.Tensor, target: torch.Tensor,
                finished: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the next subtask where there is a target (-1: none) plus binary cross-entropy of
    the finished head where there is a label (nan: none); each a mean over its rows, 0 without rows."""
    # both heads always in the graph (at zero weight), so DDP sees every parameter get a gradient
    loss = 0.0 * finished_logit.sum() + 0.0 * next_logits.masked_fill(~torch.isfinite(next_logits), 0.0).sum()
    has = target >= 0
    if has.any():
        loss = loss + F.cross_entropy(next_logits[has], target[has])
    lab = ~torch.isnan(finished)
    if lab.any():
        loss = loss + F.binary_cross_entropy_with_logits(finished_logit[lab], finished[lab])
    return loss
