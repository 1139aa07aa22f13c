"""`coachlab train-detector`: train the learned detector on synthetic sim renders (docs/perception.md).

It renders `--frames` random labelled scenes (`sim/synthetic_scenes.py`, through `app.embedded`)
and `--val-frames` held-out ones, trains `distill/detector_train.py` on them and writes the
checkpoint to `--out`. `coachlab train-detector --out distill/detector` rebuilds the weights that ship.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

VAL_SEED_OFFSET = 1_000_003  # held-out renders never share a seed with the training renders


def cmd_train_detector(args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    from app import embedded
    from app.errors import UserError
    from distill.detector_train import DetectorTrainConfig, train_detector

    for flag, value, least in (("--frames", args.frames, 1), ("--steps", args.steps, 0 if args.init else 1),
                               ("--val-frames", args.val_frames, 0), ("--classifier-steps", args.classifier_steps, 0)):
        if value is not None and value < least:
            raise UserError(f"{flag} must be at least {least}, not {value}"
                            + (" (--steps 0 is for --init: retrain only the kind classifier)." if flag == "--steps" else "."))
    _check_writable(args.out)
    start_from = None
    if args.init:  # before the minutes of rendering: a wrong folder is one sentence now
        from distill.learned_detector import LearnedDetector
        start_from = LearnedDetector.load(args.init)
    start = time.perf_counter()
    bar = not args.no_progress
    train = list(tqdm(embedded.synthetic_frames(args.frames, args.seed), total=args.frames,
                      desc="rendering scenes", unit="scene", disable=not bar))
    val = list(tqdm(embedded.synthetic_frames(args.val_frames, args.seed + VAL_SEED_OFFSET), total=args.val_frames,
                    desc="rendering held-out scenes", unit="scene", disable=not bar))
    render_minutes = (time.perf_counter() - start) / 60
    config = DetectorTrainConfig(steps=args.steps, classifier_steps=args.classifier_steps, seed=args.seed,
                                 progress=bar)
    extra = {"frames": args.frames, "render_minutes": round(render_minutes, 2),
             # the record of the weights it started from, so the chain of trainings stays on record
             **({"init": args.init, "init_training": start_from.training} if start_from else {})}
    try:
        record = train_detector(train, val, args.out, config, extra=extra, init=start_from and start_from.net)
    except ValueError as err:
        raise UserError(str(err)) from None
    record["train_minutes"] = round((time.perf_counter() - start) / 60, 2)
    from distill.checkpoint import update_training

    update_training(args.out, "coachlab train-detector", train_minutes=record["train_minutes"])
    return {"out": args.out, **{k: v for k, v in record.items() if k != "config"}}


def _check_writable(out: str) -> None:
    """Fail before twenty minutes of rendering and training, not after."""
    import os
    from pathlib import Path

    from app.errors import UserError

    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"Cannot write to --out {out} ({err.strerror or err}); choose a writable directory.") from None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train-detector", help="train the learned object detector on synthetic sim renders")
    p.add_argument("--out", required=True, help="the checkpoint directory to write")
    p.add_argument("--frames", type=int, default=1200, help="random labelled scenes to train on")
    p.add_argument("--val-frames", type=int, default=200, dest="val_frames", help="held-out scenes to score")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps of both stages together")
    p.add_argument("--classifier-steps", type=int, default=None, dest="classifier_steps",
                   help="then steps of the kind classifier alone on the final proposals (default: 0.75 x --steps; "
                        "1500 with --steps 0)")
    p.add_argument("--init", default=None, help="a detector directory to start from instead of a new network "
                                                "(with --steps 0: retrain only its kind classifier)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", dest="no_progress")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_train_detector)
    return p
