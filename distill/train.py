"""Training the high-level policy from coaching logs: one readable loop, nanoGPT style.

    python -m distill.train --db coach.db --out runs/hl --epochs 10
    torchrun --nproc_per_node 2 -m distill.train --db coach.db --out runs/hl   # DDP (gloo on CPU, nccl on GPUs)

Under torchrun (WORLD_SIZE > 1) every process builds the same samples, trains on its shard of
them (DistributedSampler) and DDP averages the gradients; only rank 0 validates, draws the plot,
writes the checkpoint and registers it in storage. Validation per epoch: subtask accuracy (the
predicted string equals the target exactly), semantic accuracy (the sentence-encoder cosine of the
predicted and the true string > 0.9 counts as the same meaning) overall and on the targets whose
text never appeared verbatim in training, and the accuracy on those unseen targets when their
strings are added to the candidates at evaluation time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import numpy as np

from distill.dataset import DatasetConfig, DistillError, Sample, build_samples, metadata_prompt, select_episodes
from coaching.high_level import DONE
from distill.recolour import augment

if TYPE_CHECKING:  # torch loads inside the functions, so building the command line stays light
    import torch

    from distill.model import SubtaskScorer, TextTable

PLOT = "training.png"


@dataclass
class TrainConfig:
    data: DatasetConfig = field(default_factory=DatasetConfig)
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    shift: int = 4  # random image shift in pixels (augmentation)
    semantic_threshold: float = 0.9
    metadata_dropout: float = 0.3
    temperature: float = 0.05
    recolour_copies: int = 0  # colour-swapped copies of each training sample (distill/recolour.py); off, see docs
    progress: bool = True
    register: bool = True  # register the checkpoint in the database


# ----------------------------------------------------------------------------- tensors

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
        return ({c: v[idx] for c, v in self.images.items()}, self.state[idx], self.task[idx], self.hist[idx],
                self.hist_mask[idx], self.meta[idx])


def to_tensors(samples: list[Sample], cameras: list[str], bank: list[str], history: int, table: TextTable) -> Tensors:
    import torch

    from distill.model import TEXT_DIM, history_tensor

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


def policy_loss(next_logits: torch.Tensor, finished_logit: torch.Tensor, target: torch.Tensor,
                finished: torch.Tensor) -> torch.Tensor:
    """Is the active subtask done (binary cross-entropy, every sample), and if so what comes next
    (cross-entropy, on the samples where it is)."""
    import torch.nn.functional as F

    loss = F.binary_cross_entropy_with_logits(finished_logit, finished)
    switch = finished > 0
    if switch.any():
        loss = loss + F.cross_entropy(next_logits[switch], target[switch]) * switch.float().mean()
    return loss


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image by up to `pad` pixels (edge padding, then a random crop), uint8 in and out."""
    import torch
    import torch.nn.functional as F

    if pad <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2, b))
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    return out.to(torch.uint8)


# ----------------------------------------------------------------------------- evaluation

def evaluate(model: SubtaskScorer, data: Tensors, bank: list[str], bank_emb: torch.Tensor, table: TextTable,
             train_targets: set[str], threshold: float, batch_size: int = 256) -> dict[str, Any]:
    """Loss and accuracies of `model` on `data` (see the module docstring)."""
    import torch

    with torch.no_grad():
        return _evaluate(model, data, bank, bank_emb, table, train_targets, threshold, batch_size)


def _evaluate(model: SubtaskScorer, data: Tensors, bank: list[str], bank_emb: torch.Tensor, table: TextTable,
              train_targets: set[str], threshold: float, batch_size: int) -> dict[str, Any]:
    import torch

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


# ----------------------------------------------------------------------------- plot

def save_plot(history: list[dict[str, Any]], path: Path) -> None:
    """Loss (train, val) and validation accuracy (exact, semantic, switch) per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: training runs headless
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    series_loss = {"train loss": [h.get("train_loss") for h in history], "val loss": [h.get("val_loss") for h in history]}
    series_acc = {"val accuracy": [h.get("val_accuracy") for h in history],
                  "val semantic": [h.get("val_semantic_accuracy") for h in history],
                  "val switch": [h.get("val_switch_accuracy") for h in history],
                  "val finished": [h.get("val_finished_accuracy") for h in history]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, series, title in ((axes[0], series_loss, "loss"), (axes[1], series_acc, "validation accuracy")):
        for name, ys in series.items():
            pts = [(e, y) for e, y in zip(epochs, ys) if y is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- the loop

def _distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group from torchrun's env vars when WORLD_SIZE > 1."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


def train(db_url: str | None, out_dir: str, config: TrainConfig | None = None) -> dict[str, Any]:
    """Distill a high-level policy from the logged episodes at `db_url` into `out_dir`; returns the metrics."""
    import torch
    import torch.distributed as dist
    from tqdm import tqdm

    from distill.checkpoint import save_checkpoint, update_training
    from distill.model import ModelConfig, SubtaskScorer, TextTable
    from storage import open_database, register_policy

    config = config or TrainConfig()
    torch.set_num_threads(1)
    rank, world = _distributed()
    t0 = time.monotonic()
    out = Path(out_dir)
    data_cfg = config.data
    if data_cfg.cache_dir is None:
        data_cfg = DatasetConfig(**{**asdict(data_cfg), "cache_dir": str(out / "frame_cache")})
    db = open_database(db_url)
    try:
        select_episodes(db, data_cfg)  # every rank fails alike on an empty selection, before any barrier
        # Rank 0 decodes the frames (and caches them); the others then read the cache.
        if rank == 0:
            train_s, val_s, info = build_samples(db, data_cfg, progress=config.progress)
        if world > 1:
            dist.barrier()
        if rank != 0:
            train_s, val_s, info = build_samples(db, data_cfg, progress=False)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        train_s = augment(train_s, config.recolour_copies, config.seed)
        table = TextTable()
        bank = sorted({s.target for s in train_s} - {DONE}) + [DONE]
        states = np.stack([s.state for s in train_s])
        mcfg = ModelConfig(cameras=info.cameras, state_dim=info.state_dim, image_size=data_cfg.image_size,
                           history=data_cfg.history, temperature=config.temperature,
                           metadata_dropout=config.metadata_dropout, state_mean=states.mean(0).tolist(),
                           state_std=np.maximum(states.std(0), 1e-3).tolist(), bank=bank)
        model = SubtaskScorer(mcfg)
        tr = to_tensors(train_s, info.cameras, bank, data_cfg.history, table)
        va = to_tensors(val_s, info.cameras, bank, data_cfg.history, table)
        bank_emb = table.embed(bank)
        train_targets = {s.target for s in train_s}
        ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        ids = torch.utils.data.TensorDataset(torch.arange(len(tr)))
        sampler = (torch.utils.data.DistributedSampler(ids, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
                   if world > 1 else torch.utils.data.RandomSampler(ids, generator=torch.Generator().manual_seed(config.seed)))
        loader = torch.utils.data.DataLoader(ids, batch_size=config.batch_size, sampler=sampler, drop_last=False)
        total = config.epochs * len(loader)
        history: list[dict[str, Any]] = []
        bar = tqdm(total=total, desc="distilling", unit="step", disable=rank != 0 or not config.progress)
        it = 0
        for epoch in range(1, config.epochs + 1):
            if world > 1:
                sampler.set_epoch(epoch)
            model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            for (idx,) in loader:
                lr = config.lr * min(1.0, (it + 1) / max(1, len(loader))) * 0.5 * (1 + math.cos(math.pi * it / max(1, total)))
                for group in opt.param_groups:
                    group["lr"] = lr
                images, state, task, hist, mask, meta = tr.batch(idx)
                images = {c: random_shift(v, config.shift) for c, v in images.items()}
                logits, next_logits, finished_logit = ddp(images, state, task, hist, mask, meta, bank_emb)
                target = tr.target[idx]
                loss = policy_loss(next_logits, finished_logit, target, tr.finished[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                loss_sum += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == target).sum())
                seen += len(idx)
                it += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.3f}")
            if rank != 0:
                continue
            row: dict[str, Any] = {"epoch": epoch, "train_loss": round(loss_sum / max(seen, 1), 4),
                                   "train_accuracy": round(correct / max(seen, 1), 4)}
            row.update({f"val_{k}": v for k, v in evaluate(model, va, bank, bank_emb, table, train_targets,
                                                           config.semantic_threshold).items()})
            history.append(row)
            bar.set_postfix(epoch=epoch, loss=f"{row['train_loss']:.3f}", val_acc=row.get("val_accuracy"))
            out.mkdir(parents=True, exist_ok=True)
            save_plot(history, out / PLOT)
        bar.close()
        if world > 1:
            dist.barrier()
        if rank != 0:
            return {"rank": rank, "world_size": world}
        last = history[-1] if history else {}
        metrics: dict[str, Any] = {
            "episodes": len(info.train_episode_ids) + len(info.val_episode_ids),
            "train_episodes": len(info.train_episode_ids), "val_episodes": len(info.val_episode_ids),
            "train_samples": len(tr), "val_samples": len(va), "bank_size": len(bank),
            "chance": round(1.0 / len(bank), 4), "epochs": config.epochs, "world_size": world,
            **{k: v for k, v in last.items() if k != "epoch"},
            "semantic_threshold": config.semantic_threshold,
            "train_seconds": round(time.monotonic() - t0, 1), "history": history}
        training = {"tasks": sorted({s.task for s in train_s}), "episode_ids": info.train_episode_ids,
                    "val_episode_ids": info.val_episode_ids, "dataset": {**asdict(data_cfg), "cache_dir": None},
                    "train": {k: v for k, v in asdict(config).items() if k != "data"}, "metrics": metrics,
                    "skipped": info.skipped}
        save_checkpoint(out, model, training)
        if config.register:
            policy_id = register_policy(db, "high_level", str(out.resolve()),
                                        info.train_episode_ids + info.val_episode_ids,
                                        {k: v for k, v in metrics.items() if k != "history"})
            update_training(out, policy_id=policy_id)
            metrics["policy_id"] = policy_id
        metrics.update(checkpoint=str(out), plot=str(out / PLOT))
        return metrics
    finally:
        db.close()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """Where the logs come from and where the checkpoint goes: shared by every training command."""
    p.add_argument("--db", default=None, help="database URL or SQLite file (default: $COACHLAB_DB, else the user "
                                              "data dir)")
    p.add_argument("--out", required=True, help="the checkpoint directory to write")
    p.add_argument("--tasks", default=None, help="comma list of task families (or parts of task texts); default all")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", dest="no_progress")
    p.add_argument("--json", action="store_true")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `coachlab distill` and `python -m distill.train`."""
    add_source_arguments(p)
    p.add_argument("--status", default="success", help="comma list of episode statuses to learn from")
    p.add_argument("--min-quality", type=int, default=None, dest="min_quality")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--recolour-copies", type=int, default=0, dest="recolour_copies",
                   help="colour-swapped copies of each training sample (off by default, see docs/distill.md)")
    p.add_argument("--batch-size", type=int, default=32, dest="batch_size")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sample-hz", type=float, default=2.0, dest="sample_hz")
    add_run_arguments(p)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.epochs < 1:
        raise DistillError(f"--epochs must be at least 1, not {args.epochs}.")
    if args.recolour_copies < 0:
        raise DistillError(f"--recolour-copies must be 0 or more, not {args.recolour_copies}.")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    status = tuple(s.strip() for s in (args.status or "").split(",") if s.strip()) or ("success",)
    data = DatasetConfig(tasks=tasks, status=status, min_quality=args.min_quality, sample_hz=args.sample_hz,
                         seed=args.seed)
    return TrainConfig(data=data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       recolour_copies=args.recolour_copies, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    from storage.errors import StorageError

    p = argparse.ArgumentParser(prog="distill.train", description="Distill a high-level policy from coaching logs.")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        metrics = train(args.db or os.environ.get("COACHLAB_DB"), args.out, config_from_args(args))
    except (DistillError, StorageError) as err:
        print(f"distill: {err}", file=sys.stderr)
        return 2
    if "rank" not in metrics:
        print(json.dumps(metrics, indent=2) if args.json else
              f"val accuracy {metrics.get('val_accuracy')} (chance {metrics['chance']}), checkpoint {metrics['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
