"""Training the high-level policy from coaching logs: one readable loop, nanoGPT style.

    python -m distill.train --db coach.db --out runs/hl --epochs 10
    torchrun --nproc_per_node 2 -m distill.train --db coach.db --out runs/hl   # DDP (gloo on CPU, nccl on GPUs)

Under torchrun (WORLD_SIZE > 1) rank 0 runs the detector on the stored frames (cached), then every
process replays the same situations, trains on its shard of them (DistributedSampler) and DDP
averages the gradients; only rank 0 validates, draws the plot, writes the checkpoint and registers
it in storage.

This file is the loop, top to bottom: the config, `train` (episodes, vocabulary, situations, model,
optimisation, a validation per epoch, checkpoint), then the command line. What it calls: selecting
and splitting episodes (`distill/dataset.py`), reading and replaying them (`distill/situations.py`),
their tensors and the objective (`distill/batches.py`), the network (`distill/model.py`), the
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
from coaching.text_encoder import DIM as TEXT_DIM
from distill.dataset import DatasetConfig, DatasetInfo, DistillError, count_damaged, select_episodes, split_episodes
from distill.situations import ReplayStats, fit_vocabulary, read_episode, replay
from distill.run import (HIGH_LEVEL_KIND, add_run_arguments, add_source_arguments, parse_tasks, run_database,
                         save_and_register, training_record, with_frame_cache)

# torch loads inside the functions, so building the command line stays light


TRAIN_FLAGS = ("epochs", "batch_size", "lr")  # TrainConfig fields that are options
DATA_FLAGS = ("min_quality", "sample_hz")  # DatasetConfig fields that are options


@dataclass
class TrainConfig:
    data: DatasetConfig = field(default_factory=DatasetConfig)
    epochs: int = 12
    min_steps: int = 400  # a few episodes make a few batches an epoch: train at least this many steps
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    metadata_dropout: float = 0.3  # pi0.7's prompt dropout: the metadata may be left out at run time
    label_dropout: float = 0.3  # item labels' embeddings zeroed at random: unseen colour x kind pairs
    hidden: int = 256
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


def _read(db: Any, ids: list[int], detector: Any, cache_dir: str | None, sample_hz: float, progress: bool,
          damaged: list[Any]) -> dict:
    """{episode id: LoggedEpisode} of the episodes that have steps and subtasks (detector on their frames);
    the damaged stored frames met (their steps are left out) are appended to `damaged`."""
    from tqdm import tqdm

    from storage import load_episode

    out = {}
    for eid in tqdm(ids, desc="reading episodes (detector on stored frames)", unit="episode", disable=not progress):
        record = load_episode(db, eid)
        ep = read_episode(record, detector, cache_dir, sample_hz)
        damaged.extend(record.damaged)
        if ep is not None:
            out[eid] = ep
    return out


def train(db_url: str | None, out_dir: str, config: TrainConfig | None = None, detector: Any = None) -> dict[str, Any]:
    """Distill a high-level policy from the logged episodes at `db_url` (None: the configured database)
    into the checkpoint directory `out_dir`, seeing them through `detector` (default: the learned
    detector that ships with coachlab); returns the metrics (rank 0; the other ranks of a torchrun
    return only their rank). Anything a user can get wrong is a one-sentence DistillError (or a
    `storage.errors.StorageError` for the database)."""
    import torch
    import torch.distributed as dist
    from tqdm import tqdm

    from distill.batches import policy_loss, to_tensors
    from distill.detections import detector_identity
    from distill.features import Featurizer
    from distill.learned_policy import COMMAND, FORMAT
    from distill.memory import track_features_dim
    from distill.model import HighLevelNet, ModelConfig
    from distill.validation import evaluate, save_plot

    config = config or TrainConfig()
    detector = detector if detector is not None else shipped_detector()
    torch.set_num_threads(1)
    out = Path(out_dir)
    data_cfg = with_frame_cache(config.data, out)
    with _process_group() as (rank, world), run_database(db_url) as db:
        t0 = time.monotonic()
        ids = select_episodes(db, data_cfg)  # every rank fails alike on an empty selection, before any barrier
        train_ids, val_ids = split_episodes(ids, data_cfg.val_fraction, data_cfg.seed)
        # Rank 0 runs the detector on the stored frames (and caches it); the others then read the cache.
        damaged: list[Any] = []
        if rank == 0:
            episodes = _read(db, ids, detector, data_cfg.cache_dir, data_cfg.sample_hz, config.progress, damaged)
        if world > 1:
            dist.barrier()
        if rank != 0:
            episodes = _read(db, ids, detector, data_cfg.cache_dir, data_cfg.sample_hz, False, [])
        train_eps = [episodes[i] for i in train_ids if i in episodes]
        val_eps = [episodes[i] for i in val_ids if i in episodes]
        if not train_eps:
            raise DistillError(f"The {len(train_ids)} selected training episodes have no steps with subtasks: "
                               "select episodes that were coached to the end.")
        cameras = sorted(train_eps[0].image_sizes)
        if any(sorted(e.image_sizes) != cameras or e.state.shape[1] != train_eps[0].state.shape[1]
               for e in train_eps + val_eps):
            raise DistillError("The selected episodes come from robots with different cameras or proprio states: "
                               "distill episodes recorded with the same robot.")
        vocabulary = fit_vocabulary(train_eps, cameras)
        featurizer = Featurizer(vocabulary)
        stats = ReplayStats()
        damaged_frames = count_damaged(damaged, stats.skipped)  # said on stderr; in the report below
        replayed = {e.id: replay(e, featurizer, stats) for e in tqdm(train_eps + val_eps, desc="replaying episodes",
                                                                     unit="episode", disable=rank != 0 or not config.progress)}
        train_s = [s for e in train_eps for s in replayed[e.id]]
        val_s = [s for e in val_eps for s in replayed[e.id]]
        if not any(s.target is not None for s in train_s):
            raise DistillError("No logged subtask of the selected episodes names a subtask the policy can learn "
                               f"(skipped: {stats.skipped or 'nothing'}): select episodes that are not all mistakes.")
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        track_dim = track_features_dim(len(cameras))
        state_dim = train_eps[0].state.shape[1]
        G = len(vocabulary.groups.groups)
        mcfg = ModelConfig(context_dim=featurizer.context_dim(state_dim), track_dim=track_dim, groups=G,
                           slotted=list(vocabulary.groups.slotted), hidden=config.hidden,
                           vocabulary=vocabulary.to_dict())
        model = HighLevelNet(mcfg)
        model.group_emb.copy_(torch.from_numpy(featurizer.group_emb))
        tr, va = to_tensors(train_s, track_dim), to_tensors(val_s, track_dim) if val_s else None
        meta = slice(TEXT_DIM, 2 * TEXT_DIM)  # the metadata prompt's place in the context (after the task)
        ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        ids_ds = torch.utils.data.TensorDataset(torch.arange(len(tr)))
        sampler = (torch.utils.data.DistributedSampler(ids_ds, num_replicas=world, rank=rank, shuffle=True,
                                                       seed=config.seed) if world > 1 else
                   torch.utils.data.RandomSampler(ids_ds, generator=torch.Generator().manual_seed(config.seed)))
        loader = torch.utils.data.DataLoader(ids_ds, batch_size=config.batch_size, sampler=sampler)
        epochs = max(config.epochs, math.ceil(config.min_steps / max(len(loader), 1)))
        total = epochs * len(loader)
        history: list[dict[str, Any]] = []
        bar = tqdm(total=total, desc="distilling", unit="step", disable=rank != 0 or not config.progress)
        it = 0
        for epoch in range(1, epochs + 1):
            if world > 1:
                sampler.set_epoch(epoch)
            model.train()
            loss_sum, seen = 0.0, 0
            for (idx,) in loader:
                # linear warm-up over the first epoch, then cosine decay
                lr = config.lr * min(1.0, (it + 1) / max(1, len(loader))) * 0.5 * (1 + math.cos(math.pi * it / max(1, total)))
                for group in opt.param_groups:
                    group["lr"] = lr
                next_logits, finished_logit = ddp(*tr.batch(idx, config.label_dropout, config.metadata_dropout, meta))
                loss = policy_loss(next_logits, finished_logit, tr.target[idx], tr.finished[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                loss_sum += float(loss.detach()) * len(idx)
                seen += len(idx)
                it += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.3f}")
            if rank != 0 or (epoch % max(1, epochs // 12) and epoch != epochs):  # about 12 validations a run
                continue
            row: dict[str, Any] = {"epoch": epoch, "train_loss": round(loss_sum / max(seen, 1), 4)}
            if va is not None:
                row.update({f"val_{k}": v for k, v in evaluate(model, va, G).items()})
            history.append(row)
            bar.set_postfix(epoch=epoch, loss=f"{row['train_loss']:.3f}", val_next=row.get("val_next_accuracy"))
            save_plot(history, out)
        bar.close()
        if world > 1:
            dist.barrier()
        if rank != 0:
            return {"rank": rank, "world_size": world}
        last = history[-1] if history else {}
        metrics: dict[str, Any] = {
            "episodes": len(train_eps) + len(val_eps), "train_episodes": len(train_eps), "val_episodes": len(val_eps),
            "train_situations": len(tr), "val_situations": len(va) if va is not None else 0,
            "subtask_groups": G, "templates": sum(len(g) for g in vocabulary.groups.groups),
            "epochs": epochs, "world_size": world, **{k: v for k, v in last.items() if k != "epoch"},
            "detector": detector_identity(detector), "train_seconds": round(time.monotonic() - t0, 1),
            "skipped": stats.skipped, "damaged_frames": damaged_frames, "history": history}
        info = DatasetInfo([e.id for e in train_eps], [e.id for e in val_eps], cameras, state_dim, len(tr),
                           len(va) if va is not None else 0, stats.skipped)
        training = training_record(info, data_cfg, config, metrics, tasks=sorted({e.task for e in train_eps}),
                                   skipped=stats.skipped, detector=detector_identity(detector))
        metrics.update(save_and_register(db, out, model, training, fmt=FORMAT, command=COMMAND, kind=HIGH_LEVEL_KIND,
                                         register=config.register, episode_ids=info.train_episode_ids + info.val_episode_ids,
                                         summary={k: v for k, v in metrics.items() if k != "history"}))
        return metrics


def shipped_detector() -> Any:
    """The learned detector that ships with coachlab (`distill/detector/`), the embedded default."""
    from distill.learned_detector import SHIPPED, LearnedDetector

    return LearnedDetector.load(SHIPPED)


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
              f"validation: next subtask {metrics.get('val_next_accuracy')}, done {metrics.get('val_done_accuracy')}, "
              f"finished {metrics.get('val_finished_accuracy')}; checkpoint {metrics['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
