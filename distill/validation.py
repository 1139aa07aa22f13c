"""Validating the high-level policy: the metrics computed after every epoch and the plot of them.

`evaluate` gives, on the situations of held-out episodes: the loss (the training objective, so
the two curves compare), `next_accuracy` (at a switch, the top choice is the logged subtask: its
group and, where it names one, its item), `item_accuracy` (among switches to a subtask naming an
item, the top choice names that item), `done_accuracy` (at the end of a successful episode, `done`
comes first) and `finished_accuracy` (the finished head's call against the label). `save_plot`
draws them per epoch into the run's `training.png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.batches import Tensors, policy_loss
from distill.run import epoch_plot, plot_series


def evaluate(model: Any, data: Tensors, groups: int, batch_size: int = 256) -> dict[str, Any]:
    """Loss and accuracies of `model` on `data` (see the module docstring); `groups` is G (the
    slotless logits come first). Values rounded to 4 places, None where nothing counts; {} when empty."""
    if len(data) == 0:
        return {}
    was_training = model.training
    model.eval()
    preds, fins, loss_sum = [], [], 0.0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(data)))
            next_logits, finished_logit = model(*data.batch(idx))
            loss_sum += float(policy_loss(next_logits, finished_logit, data.target[idx], data.finished[idx])) * len(idx)
            preds.append(next_logits.argmax(1))
            fins.append(finished_logit > 0)
    model.train(was_training)
    pred, fin = torch.cat(preds).numpy(), torch.cat(fins).numpy()
    target, finished = data.target.numpy(), data.finished.numpy()
    kinds = np.array(data.kinds)
    has = target >= 0

    def mean(sel: np.ndarray, ok: np.ndarray) -> float | None:
        return round(float(ok[sel].mean()), 4) if sel.any() else None

    labelled = ~np.isnan(finished)
    return {"loss": round(loss_sum / len(data), 4),
            "next_accuracy": mean(has & (kinds == "switch"), pred == target),
            "item_accuracy": mean(has & (kinds == "switch") & (target >= groups), pred == target),
            "done_accuracy": mean(has & (kinds == "done"), pred == target),
            "finished_accuracy": mean(labelled, fin == (finished > 0.5))}


def save_plot(history: list[dict[str, Any]], out: Path) -> None:
    """Loss (train, validation) and the validation accuracies per epoch, into `out / PLOT`."""
    epochs = [h["epoch"] for h in history]
    with epoch_plot(out) as (loss_ax, acc_ax):
        plot_series(loss_ax, epochs, [h.get("train_loss") for h in history], label="train loss")
        plot_series(loss_ax, epochs, [h.get("val_loss") for h in history], label="validation loss")
        loss_ax.set_title("loss")
        for key, name in (("val_next_accuracy", "next subtask"), ("val_item_accuracy", "item named"),
                          ("val_done_accuracy", "done"), ("val_finished_accuracy", "finished")):
            plot_series(acc_ax, epochs, [h.get(key) for h in history], label=name)
        acc_ax.set_ylim(0, 1.05)
        acc_ax.set_title("validation accuracy")
