"""The high-level policy's text inputs: strings to frozen sentence embeddings, and a subtask history
to the right-aligned (newest last) embedding block the network takes.

The encoder is the shared all-MiniLM-L6-v2 of `coaching.text_encoder` (never trained here); it
caches per text, so the same subtask strings cost nothing the second time.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from coaching.text_encoder import DIM as TEXT_DIM


class TextTable:
    """Frozen sentence embeddings of strings, looked up by string (the encoder caches per text)."""

    def __init__(self, encoder: Any | None = None):
        if encoder is None:
            from coaching.text_encoder import default_encoder

            encoder = default_encoder()
        self.encoder = encoder

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, 384) float32; the empty string embeds to zeros (an absent prompt component)."""
        texts = list(texts)
        out = np.zeros((len(texts), TEXT_DIM), dtype=np.float32)
        real = [i for i, t in enumerate(texts) if t]
        if real:
            out[real] = self.encoder.encode([texts[i] for i in real])
        return torch.from_numpy(out)


def history_tensor(histories: Sequence[list[str]], length: int, table: TextTable) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, E) embeddings right-aligned (newest last) and the (B, H) presence mask, H = `length`.
    Each history must hold at most `length` items (`history_items` cuts them so): a longer one would
    land in the wrong slots."""
    b = len(histories)
    emb = torch.zeros(b, length, TEXT_DIM)
    mask = torch.zeros(b, length)
    flat = [(i, length - len(h) + j, t) for i, h in enumerate(histories) for j, t in enumerate(h[-length:])]
    if flat:
        vecs = table.embed([t for *_, t in flat])
        for (i, j, _), v in zip(flat, vecs):
            emb[i, j] = v
            mask[i, j] = 1.0
    return emb, mask
