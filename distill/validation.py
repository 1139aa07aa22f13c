"""Validating the high-level policy: the metrics computed after every epoch and the plot of them.

`evaluate` gives, on held-out samples: the loss (the training objective, so the two curves
compare), subtask accuracy (the predicted string equals the target exactly), semantic accuracy
(the sentence-encoder cosine of the predicted and the true string above a threshold, 0.9 by
default, counts as the same meaning) overall and on the targets whose text never appeared verbatim
in training, the accuracy on those unseen targets when their strings are added to the candidates
at evaluation time, the finished head's accuracy, and the accuracy per kind of sample (continue,
switch, done). `save_plot` draws them per epoch into the run's `training.png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from coaching.high_level import DONE
from distill.batches import Tensors, policy_loss
from distill.model import SubtaskScorer
from distill.run import epoch_plot, plot_series
from distill.text_table import TextTable


def evaluate(model: SubtaskScorer, data: Tensors, bank: list[str], bank_emb: torch.Tensor, table: TextTable,
             train_targets: set[str], threshold: float, batch_size: int = 256) -> dict[str, Any]:
    """Loss and accuracies of `model` on `data` (see the module docstring), `bank` the C candidate strings
    and `bank_emb` (C, E) their sentence embeddings, `train_targets` the target strings of training.
    Values are rounded to 4 places, None where no sample counts; {} when `data` is empty."""
    with torch.no_grad():
        return _evaluate(model, data, bank, bank_emb, table, train_targets, threshold, batch_size)


def _evaluate(model: SubtaskScorer, data: Tensors, bank: list[str], bank_emb: torch.Tensor, table: TextTable,
              train_targets: set[str], threshold: float, batch_size: int) -> dict[str, Any]:
    if len(data) == 0:
        return {}
    was_training = model.training
    model.eval()
    unseen_texts = sorted({t for t in data.targets if t not in train_targets})
    ext_bank = bank + unseen_texts
    ext_emb = torch.cat([bank_emb, table.embed(unseen_texts)]) if unseen_texts else bank_emb
    cand = model.candidates(ext_emb)
    preds, ext_preds, losses, finished = [], [], [], []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        batch = data.batch(idx)
        query = model.query(*batch)
        logits = model.scores(query, batch[3], batch[4], cand, ext_emb)
        has_history = batch[4][:, -1] > 0  # without one, "finished" is given, not predicted
        finished.append(((query[2] > 0).float() == data.finished[idx])[has_history])
        preds.append(logits[:, :len(bank)].argmax(dim=1))
        ext_preds.append(logits.argmax(dim=1))
        t = data.target[idx]
        known = t >= 0
        if known.any():  # the training loss, so the two curves of the plot compare
            next_logits = model.next_logits(query, batch[3], cand[:len(bank)], bank_emb)
            losses.append(policy_loss(next_logits[known], query[2][known], t[known], data.finished[idx][known])
                          * int(known.sum()))
    pred = torch.cat(preds)
    ext_pred = torch.cat(ext_preds)
    pred_text = [bank[int(i)] for i in pred]
    # "Same meaning": cosine of the sentence embeddings of predicted and true text above the threshold.
    uniq = sorted(set(pred_text) | set(data.targets))
    vec = dict(zip(uniq, table.embed(uniq).numpy()))
    cos = np.array([float(vec[p] @ vec[t]) if p != t else 1.0 for p, t in zip(pred_text, data.targets)])
    exact = np.array([p == t for p, t in zip(pred_text, data.targets)])
    semantic = cos > threshold
    unseen = np.array([t not in train_targets for t in data.targets])
    ext_exact = np.array([ext_bank[int(i)] == t for i, t in zip(ext_pred, data.targets)])
    switch = np.array([v == "previous" for v in data.views])
    done = np.array([t == DONE for t in data.targets])
    n_known = int((data.target >= 0).sum())
    model.train(was_training)

    def mean(a: np.ndarray, sel: np.ndarray | None = None) -> float | None:
        a = a if sel is None else a[sel]
        return round(float(a.mean()), 4) if len(a) else None

    return {"loss": round(float(torch.stack(losses).sum()) / max(n_known, 1), 4) if losses else None,
            "accuracy": mean(exact), "semantic_accuracy": mean(semantic),
            "switch_accuracy": mean(exact, switch), "continue_accuracy": mean(exact, ~switch),
            "finished_accuracy": mean(torch.cat(finished).numpy()),
            "done_accuracy": mean(exact, done),
            "unseen_samples": int(unseen.sum()), "unseen_texts": len(unseen_texts),
            "unseen_semantic_accuracy": mean(semantic, unseen),
            "unseen_extended_accuracy": mean(ext_exact, unseen)}


def save_plot(history: list[dict[str, Any]], out: Path) -> None:
    """Loss (train, val) and validation accuracy (exact, semantic, switch, finished) per epoch, from the
    rows of `history` (`epoch`, `train_loss` and the `val_` metrics), into `out`'s `training.png`."""
    epochs = [h["epoch"] for h in history]
    series_loss = {"train loss": [h.get("train_loss") for h in history], "val loss": [h.get("val_loss") for h in history]}
    series_acc = {"val accuracy": [h.get("val_accuracy") for h in history],
                  "val semantic": [h.get("val_semantic_accuracy") for h in history],
                  "val switch": [h.get("val_switch_accuracy") for h in history],
                  "val finished": [h.get("val_finished_accuracy") for h in history]}
    with epoch_plot(out) as axes:
        for ax, series, title in ((axes[0], series_loss, "loss"), (axes[1], series_acc, "validation accuracy")):
            for name, ys in series.items():
                plot_series(ax, epochs, ys, label=name)
            ax.set_title(title)
        axes[1].set_ylim(0, 1)
