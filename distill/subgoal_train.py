"""Training the subgoal image model (`coachlab distill-subgoals`), top to bottom.

Pairs come from `distill/subgoal_data.py`; the model is `distill/subgoal_model.py`. The loss is an
L1 distance to the real end frame in which the pixels that change count `changed_weight` times
more: most of a frame stays as it is, and an unweighted loss is content to copy it. Training runs
for `epochs` or until `minutes` have passed, whichever comes first, with a cosine learning rate
that decays over whichever of the two runs out first.
Each epoch the held-out episodes are scored against the copy baseline at the preview moment (a
segment's first step); a loss and PSNR-gain plot and per-camera sample grids (current | generated
| real end) are written as PNGs next to the checkpoint, which is registered in storage. What a run
does around its loop (database, output directory, plot file, checkpoint, registration, the shared
command-line options) is `distill/run.py`, shared with the high-level policy's `distill/train.py`.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coaching.text_encoder import DIM as TEXT_DIM
from coaching.config_flags import add_flags, from_flags
from distill.dataset import DistillError
from distill.run import (SUBGOALS_KIND, add_run_arguments, add_source_arguments, epoch_plot, parse_tasks, plot_series,
                         run_database, save_and_register, training_record, with_frame_cache)
from distill.subgoal_data import SubgoalDataConfig, SubgoalPair, build_pairs


TRAIN_FLAGS = ("epochs", "minutes", "batch_size", "lr")  # SubgoalTrainConfig fields that are options
DATA_FLAGS = ("min_quality", "image_size")  # SubgoalDataConfig fields that are options


@dataclass
class SubgoalTrainConfig:
    data: SubgoalDataConfig = field(default_factory=SubgoalDataConfig)
    epochs: int = 12  # on 20 episodes x 3 families validation stops improving after about 10
    minutes: float = field(default=15.0, metadata={"help": "the wall-clock budget: stop after the epoch that passes it"})
    batch_size: int = 16  # pairs; each brings one image per camera
    lr: float = 2e-3
    weight_decay: float = 1e-4
    changed_weight: float = 5.0
    channels: tuple[int, ...] = (32, 64, 128)
    seed: int = 0
    threads: int | None = None  # torch threads (None: torch's default, all cores)
    progress: bool = True
    register: bool = True
    samples: int = 6  # pairs shown in each camera's sample grid


class PairTensors:
    """The pairs as uint8 tensors (N, cams, 3, S, S) and an index into a table of text embeddings."""

    def __init__(self, pairs: list[SubgoalPair], cameras: list[str], encoder: Any):
        import torch

        self.pairs = pairs
        texts = sorted({p.text for p in pairs})
        self.texts = texts
        self.text_emb = torch.from_numpy(np.asarray(encoder.encode(texts), np.float32)) if texts else torch.zeros(0, TEXT_DIM)
        where = {t: i for i, t in enumerate(texts)}
        self.text = torch.tensor([where[p.text] for p in pairs], dtype=torch.long)

        def stack(key: str) -> Any:
            if not pairs:
                return torch.zeros(0, len(cameras), 3, 1, 1, dtype=torch.uint8)
            arr = np.stack([np.stack([getattr(p, key)[c] for c in cameras]) for p in pairs])  # N, C, S, S, 3
            return torch.from_numpy(arr).permute(0, 1, 4, 2, 3).contiguous()

        self.current, self.end = stack("current"), stack("end")

    def __len__(self) -> int:
        return len(self.pairs)

    def batch(self, idx: Any) -> tuple[Any, Any, Any, Any]:
        """(current, end) as float (B*C, 3, S, S) in [0, 1], text (B*C, E), camera (B*C,)."""
        import torch

        b, c = len(idx), self.current.shape[1]
        flat = lambda t: t[idx].flatten(0, 1).float() / 255.0  # noqa: E731
        text = self.text_emb[self.text[idx]].repeat_interleave(c, dim=0)
        camera = torch.arange(c).repeat(b)
        return flat(self.current), flat(self.end), text, camera


def weighted_l1(pred: Any, target: Any, current: Any, changed_weight: float) -> Any:
    changed = ((target - current).abs().amax(dim=1, keepdim=True) > 0.1).float()
    return ((pred - target).abs() * (1 + changed_weight * changed)).mean()


def predict_all(model: Any, data: PairTensors, batch_size: int = 32) -> np.ndarray:
    """(N, C, S, S, 3) uint8 predictions."""
    import torch

    outs = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(data)))
            current, _, text, camera = data.batch(idx)
            y = model(current, text, camera)
            outs.append(y.reshape(len(idx), -1, *y.shape[1:]))
    if not outs:
        return np.zeros((0,), np.uint8)
    y = torch.cat(outs).permute(0, 1, 3, 4, 2).numpy()
    return (y * 255.0 + 0.5).astype(np.uint8)


def evaluate(model: Any, data: PairTensors, cameras: list[str]) -> dict[str, dict[str, float | None]]:
    """Scores against the copy baseline per camera (see `distill/subgoal_metrics.py`)."""
    from distill.subgoal_metrics import compare_to_copy

    preds = predict_all(model, data)
    triples = ((cam, p.current[cam], preds[i, k], p.end[cam])
               for i, p in enumerate(data.pairs) for k, cam in enumerate(cameras))
    return compare_to_copy(triples)


def save_plot(history: list[dict[str, Any]], cameras: list[str], out: Path) -> None:
    """Train and validation loss, and the PSNR gain over the copy baseline on changed pixels, per epoch,
    into `out`'s `training.png`."""
    epochs = [h["epoch"] for h in history]
    with epoch_plot(out) as (ax_loss, ax_gain):
        for key in ("train_loss", "val_loss"):
            plot_series(ax_loss, epochs, [h.get(key) for h in history], label=key.replace("_", " "))
        for i, cam in enumerate(cameras):
            # colours apart from the loss panel's, so a camera is not read as train or val
            plot_series(ax_gain, epochs, [h.get("val", {}).get(cam, {}).get("psnr_gain_changed_db") for h in history],
                        label=cam, color=f"C{2 + i}")
        ax_gain.axhline(0.0, color="grey", lw=1, ls="--", label="copy baseline")
        ax_loss.set_title("weighted L1 loss")
        ax_gain.set_title("PSNR gain over copying, changed pixels (dB)")


def save_sample_grids(model: Any, data: PairTensors, cameras: list[str], out: Path, count: int) -> list[str]:
    """One PNG per camera: a row per held-out pair, columns current | generated | real end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(data) == 0:
        return []
    rows = np.linspace(0, len(data) - 1, min(count, len(data))).round().astype(int)
    preds = predict_all(model, data)
    paths = []
    for k, cam in enumerate(cameras):
        fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)), squeeze=False)
        for r, i in enumerate(rows):
            pair = data.pairs[i]
            for c, (img, name) in enumerate(((pair.current[cam], "current"), (preds[i, k], "generated"),
                                              (pair.end[cam], "real end"))):
                ax = axes[r, c]
                ax.imshow(img)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(name)
            axes[r, 0].set_ylabel(pair.text[:28] + ("..." if len(pair.text) > 28 else ""), fontsize=8)
        fig.suptitle(f"{cam} camera, held-out episodes")
        fig.tight_layout()
        path = out / f"samples_{cam}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(str(path))
    return paths


# ----------------------------------------------------------------------------- the loop

def train(db_url: str | None, out_dir: str, config: SubgoalTrainConfig | None = None) -> dict[str, Any]:
    """Train a subgoal model on the episodes at `db_url`, write it to `out_dir`; returns the metrics."""
    import torch
    from tqdm import tqdm

    from coaching.text_encoder import default_encoder
    from distill.learned_subgoals import COMMAND, FORMAT
    from distill.subgoal_model import SubgoalModelConfig, SubgoalUNet

    config = config or SubgoalTrainConfig()
    t0 = time.monotonic()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out = Path(out_dir)
    data_cfg = with_frame_cache(config.data, out)
    with run_database(db_url) as db:
        train_pairs, val_pairs, info = build_pairs(db, data_cfg, progress=config.progress)
        encoder = default_encoder()
        tr = PairTensors(train_pairs, info.cameras, encoder)
        va = PairTensors([p for p in val_pairs if p.at_start], info.cameras, encoder)  # the preview moment
        model = SubgoalUNet(SubgoalModelConfig(cameras=info.cameras, image_size=data_cfg.image_size,
                                               channels=tuple(config.channels)))
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = max(1, math.ceil(len(tr) / config.batch_size))
        total = config.epochs * steps_per_epoch
        gen = torch.Generator().manual_seed(config.seed)
        history: list[dict[str, Any]] = []
        out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=total, desc="training subgoal model", unit="step", disable=not config.progress)
        it = 0
        for epoch in range(1, config.epochs + 1):
            model.train()
            loss_sum, seen = 0.0, 0
            for idx in torch.randperm(len(tr), generator=gen).split(config.batch_size):
                # cosine over whichever runs out first, the epochs or the time budget
                progress = min(1.0, max(it / total, (time.monotonic() - t0) / (60 * config.minutes)))
                lr = config.lr * min(1.0, (it + 1) / 50) * 0.5 * (1 + math.cos(math.pi * progress))
                for group in opt.param_groups:
                    group["lr"] = lr
                current, end, text, camera = tr.batch(idx)
                loss = weighted_l1(model(current, text, camera), end, current, config.changed_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                loss_sum += float(loss.detach()) * len(idx)
                seen += len(idx)
                it += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.4f}")
            row: dict[str, Any] = {"epoch": epoch, "train_loss": round(loss_sum / max(seen, 1), 5)}
            if len(va):
                with torch.inference_mode():
                    model.eval()
                    val_losses = [float(weighted_l1(model(c, t, k), e, c, config.changed_weight))
                                  for c, e, t, k in (va.batch(i) for i in torch.arange(len(va)).split(64))]
                row["val_loss"] = round(float(np.mean(val_losses)), 5)
                row["val"] = evaluate(model, va, info.cameras)
                bar.set_postfix(epoch=epoch, loss=f"{row['train_loss']:.4f}",
                                gain_db={c: v["psnr_gain_changed_db"] for c, v in row["val"].items()})
            history.append(row)
            save_plot(history, info.cameras, out)
            if time.monotonic() - t0 > 60 * config.minutes:
                break
        bar.close()
        last = history[-1]
        samples = save_sample_grids(model, va if len(va) else tr, info.cameras, out, config.samples)
        metrics: dict[str, Any] = {
            "train_minutes": round((time.monotonic() - t0) / 60, 2), "epochs": last["epoch"], "steps": it,
            "train_episodes": len(info.train_episode_ids), "val_episodes": len(info.val_episode_ids),
            "train_pairs": len(tr), "val_pairs": len(va), "image_size": data_cfg.image_size,
            "cameras": info.cameras, "val": last.get("val", {}),
            "psnr_gain_changed_db": {c: v["psnr_gain_changed_db"] for c, v in last.get("val", {}).items()},
            "ssim": {c: v["ssim_all"] for c, v in last.get("val", {}).items()},
            "history": history, "skipped": info.skipped, "damaged_frames": info.damaged_frames}
        training = training_record(info, data_cfg, config, metrics)
        metrics.update(save_and_register(db, out, model, training, fmt=FORMAT, command=COMMAND, kind=SUBGOALS_KIND,
                                         register=config.register,
                                         episode_ids=info.train_episode_ids + info.val_episode_ids,
                                         summary={k: v for k, v in metrics.items() if k not in ("history", "val")}))
        metrics["samples"] = samples
        return metrics


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `coachlab distill-subgoals`."""
    add_source_arguments(p)
    add_flags(p, SubgoalDataConfig, DATA_FLAGS)
    add_flags(p, SubgoalTrainConfig, TRAIN_FLAGS)
    add_run_arguments(p)


def config_from_args(args: argparse.Namespace) -> SubgoalTrainConfig:
    """The run's config from the parsed options of `add_arguments`; a bad value is a one-sentence DistillError."""
    if args.epochs < 1:
        raise DistillError(f"--epochs must be at least 1, not {args.epochs}.")
    if args.image_size < 96 or args.image_size % 16:
        raise DistillError(f"--image-size must be a multiple of 16 and at least 96, not {args.image_size}.")
    data = from_flags(SubgoalDataConfig, args, DATA_FLAGS, tasks=parse_tasks(args.tasks), seed=args.seed)
    return from_flags(SubgoalTrainConfig, args, TRAIN_FLAGS, data=data, seed=args.seed, progress=not args.no_progress)
