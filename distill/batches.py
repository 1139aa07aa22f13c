"""What the high-level policy's training loop (`distill/train.py`) and its validation
(`distill/validation.py`) feed the network: the samples as tensors, batches of them, the image
augmentation, and the objective.

Text goes in as frozen sentence embeddings (`distill/text_table.py`), computed once per distinct
string when the samples become tensors; targets are indices into the candidate bank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from coaching.high_level import DONE
from distill.dataset import Sample, metadata_prompt
from distill.text_table import TEXT_DIM, TextTable, history_tensor


@dataclass
class Tensors:
    images: dict[str, torch.Tensor]  # camera -> (N, 3, S, S) uint8
    state: torch.Tensor  # (N, D)
    task: torch.Tensor  # (N, E)
    hist: torch.Tensor  # (N, H, E)
    hist_mask: torch.Tensor  # (N, H)
    meta: torch.Tensor  # (N, E)
    target: torch.Tensor  # (N,) index into the bank, -1 when the target is not in it
    finished: torch.Tensor  # (N,) 1.0 where the newest history item is done (a switch, `done`, or no history)
    targets: list[str]
    views: list[str]

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], ...]:
        """The network's inputs for the samples `idx` (B,): (images, state, task, hist, hist_mask, meta),
        the arguments of `SubtaskScorer.query` in order."""
        return ({c: v[idx] for c, v in self.images.items()}, self.state[idx], self.task[idx], self.hist[idx],
                self.hist_mask[idx], self.meta[idx])


def to_tensors(samples: list[Sample], cameras: list[str], bank: list[str], history: int, table: TextTable) -> Tensors:
    """The samples as tensors (see `Tensors` for the shapes); `history` is the number of history slots H."""
    index = {t: i for i, t in enumerate(bank)}
    n = len(samples)
    images = {c: torch.from_numpy(np.stack([s.images[c] for s in samples])).permute(0, 3, 1, 2).contiguous()
              if n else torch.zeros(0, 3, 1, 1, dtype=torch.uint8) for c in cameras}
    state = torch.from_numpy(np.stack([s.state for s in samples])) if n else torch.zeros(0, 1)
    texts = sorted({s.task for s in samples} | {metadata_prompt(s.metadata) for s in samples})
    emb = dict(zip(texts, table.embed(texts)))
    task = torch.stack([emb[s.task] for s in samples]) if n else torch.zeros(0, TEXT_DIM)
    meta = torch.stack([emb[metadata_prompt(s.metadata)] for s in samples]) if n else torch.zeros(0, TEXT_DIM)
    hist, mask = history_tensor([s.history for s in samples], history, table)
    target = torch.tensor([index.get(s.target, -1) for s in samples], dtype=torch.long)
    finished = torch.tensor([float(s.view == "previous" or s.target == DONE or not s.history) for s in samples])
    return Tensors(images, state, task, hist, mask, meta, target, finished, [s.target for s in samples],
                   [s.view for s in samples])


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image of (B, 3, S, S) by up to `pad` pixels (edge padding, then a random crop), uint8 in and out."""
    if pad <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2, b))
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    return out.to(torch.uint8)


def policy_loss(next_logits: torch.Tensor, finished_logit: torch.Tensor, target: torch.Tensor,
                finished: torch.Tensor) -> torch.Tensor:
    """The objective, a scalar: is the active subtask done (binary cross-entropy of `finished_logit` (B,)
    against `finished` (B,), every sample), and if so what comes next (cross-entropy of `next_logits`
    (B, C) against the bank index `target` (B,), on the samples where it is, weighted by their share)."""
    loss = F.binary_cross_entropy_with_logits(finished_logit, finished)
    switch = finished > 0
    if switch.any():
        loss = loss + F.cross_entropy(next_logits[switch], target[switch]) * switch.float().mean()
    return loss
