"""`coachlab distill` and `coachlab distill-subgoals`: train the high-level policy (docs/distill.md)
and the subgoal image model (docs/subgoals.md) from logged episodes.

`add_parser(subparsers)` adds the command; its handler returns the metrics dict (printed as JSON
with --json) and raises `distill.dataset.DistillError` (or `storage.errors.StorageError`) with one
sentence for anything a user can get wrong. torch is imported inside the handler, so other
commands do not pay for it. For several processes run `torchrun -m distill.train` with the same options.
"""

from __future__ import annotations

import argparse
from typing import Any


def cmd_distill(args: argparse.Namespace) -> dict[str, Any]:
    from distill.train import config_from_args, train

    return train(args.db, args.out, config_from_args(args))


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `distill` and `distill-subgoals` to the coachlab command line."""
    from distill.train import add_arguments

    p = subparsers.add_parser("distill", help="train a high-level policy from logged episodes")
    add_arguments(p)
    p.set_defaults(func=cmd_distill)

    from distill import subgoal_train

    q = subparsers.add_parser("distill-subgoals", help="train the subgoal image model from logged episodes")
    subgoal_train.add_arguments(q)
    q.set_defaults(func=cmd_distill_subgoals)
    return p


def cmd_distill_subgoals(args: argparse.Namespace) -> dict[str, Any]:
    from distill.subgoal_train import config_from_args, train

    metrics = train(args.db, args.out, config_from_args(args))
    return {k: v for k, v in metrics.items() if k != "history"}  # the history is in the plot and training.json
