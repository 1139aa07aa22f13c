"""Training the high-level policy from coaching logs: one readable loop, nanoGPT style.

    python -m distill.train --db coach.db --out runs/hl --epochs 10
    torchrun --nproc_per_node 2 -m distill.train --db coach.db --out runs/hl   # DDP (gloo on CPU, nccl on GPUs)

Under torchrun (WORLD_SIZE > 1) every process builds the same samples, trains on its shard of
them (DistributedSampler) and DDP averages the gradients; only rank 0 validates, draws the plot,
writes the checkpoint and registers it in storage.

This file is the loop, top to bottom: the config, `train` (samples, model, optimisation, a
validation per epoch, checkpoint), then the command line. What it calls: the samples
(`distill/dataset.py`, colour-swapped copies from `distill/recolour.py`), their tensors, the image
augmentation and the objective (`distill/batches.py`), the network (`distill/model.py`), the
validation metrics and the plot (`distill/validation.py`), and what every training run does around
its loop (`distill/run.py`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from coaching.config_flags import add_flags, from_flags
from distill.dataset import DatasetConfig, DistillError, build_samples, select_episodes
from distill.recolour import augment
from distill.run import (HIGH_LEVEL_KIND, add_run_arguments, add_source_arguments, parse_tasks, run_database,
                         save_and_register, training_record, with_frame_cache)

# torch loads inside the functions, so building the command line stays light


TRAIN_FLAGS = ("epochs", "recolour_copies", "batch_size", "lr")  # TrainConfig fields that are options
DATA_FLAGS = ("min_quality", "sample_hz")  # DatasetConfig fields that are options


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
    recolour_copies: int = field(default=0, metadata={
        "help": "colour-swapped copies of each training sample (distill/recolour.py; off by default, see docs/distill.md)"})
    progress: bool = True
    register: bool = True  # register the checkpoint in the database


@contextmanager
def _process_group() -> Iterator[tuple[int, int]]:
    """(rank, world size): joins the process group from torchrun's env vars when WORLD_SIZE > 1 and
    leaves it when the run ends."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def train(db_url: str | None, out_dir: str, config: TrainConfig | None = None) -> dict[str, Any]:
    """Distill a high-level policy from the logged episodes at `db_url` (None: the configured database)
    into the checkpoint directory `out_dir`; returns the metrics (rank 0; the other ranks of a
    torchrun return only their rank). Anything a user can get wrong is a one-sentence DistillError
    (or a `storage.errors.StorageError` for the database)."""
    import torch
    import torch.distributed as dist
    from tqdm import tqdm

    from distill.batches import policy_loss, random_shift, to_tensors
    from distill.candidates import training_bank
    from distill.learned_policy import COMMAND, FORMAT
    from distill.model import ModelConfig, SubtaskScorer
    from distill.text_table import TextTable
    from distill.validation import evaluate, save_plot

    config = config or TrainConfig()
    torch.set_num_threads(1)
    out = Path(out_dir)
    data_cfg = with_frame_cache(config.data, out)
    with _process_group() as (rank, world), run_database(db_url) as db:
        t0 = time.monotonic()
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
        bank = training_bank(s.target for s in train_s)
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
            save_plot(history, out)
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
        training = training_record(info, data_cfg, config, metrics, tasks=sorted({s.task for s in train_s}),
                                   skipped=info.skipped)
        metrics.update(save_and_register(db, out, model, training, fmt=FORMAT, command=COMMAND, kind=HIGH_LEVEL_KIND,
                                         register=config.register,
                                         episode_ids=info.train_episode_ids + info.val_episode_ids,
                                         summary={k: v for k, v in metrics.items() if k != "history"}))
        return metrics


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `coachlab distill` and `python -m distill.train`."""
    add_source_arguments(p)
    p.add_argument("--status", default=",".join(DatasetConfig().status),
                   help="comma list of episode statuses to learn from")
    add_flags(p, DatasetConfig, DATA_FLAGS)
    add_flags(p, TrainConfig, TRAIN_FLAGS)
    add_run_arguments(p)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's config from the parsed options of `add_arguments`; a bad value is a one-sentence DistillError."""
    if args.epochs < 1:
        raise DistillError(f"--epochs must be at least 1, not {args.epochs}.")
    if args.recolour_copies < 0:
        raise DistillError(f"--recolour-copies must be 0 or more, not {args.recolour_copies}.")
    tasks = parse_tasks(args.tasks)
    status = tuple(s.strip() for s in (args.status or "").split(",") if s.strip()) or ("success",)
    data = from_flags(DatasetConfig, args, DATA_FLAGS, tasks=tasks, status=status, seed=args.seed)
    return from_flags(TrainConfig, args, TRAIN_FLAGS, data=data, seed=args.seed, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    """`python -m distill.train` (and under torchrun): 0 when the run finished, 2 with one line on stderr when not."""
    from storage.errors import StorageError

    p = argparse.ArgumentParser(prog="distill.train", description="Distill a high-level policy from coaching logs.")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        metrics = train(args.db, args.out, config_from_args(args))
    except (DistillError, StorageError) as err:
        print(f"distill: {err}", file=sys.stderr)
        return 2
    if "rank" not in metrics:
        print(json.dumps(metrics, indent=2) if args.json else
              f"val accuracy {metrics.get('val_accuracy')} (chance {metrics['chance']}), checkpoint {metrics['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
