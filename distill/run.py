"""The plumbing every training run shares: the high-level policy's (`distill/train.py`) and the
subgoal image model's (`distill/subgoal_train.py`).

It owns what a run does around its loop, stated once: the command-line options both trainers take,
the database the logs are read from, the output directory and its frame cache, the per-epoch plot
(`PLOT`, redrawn after every epoch, which the app's Distill tab shows while a run goes), the
training record written next to the weights, and saving the checkpoint and registering it in
storage under its policy kind (`HIGH_LEVEL_KIND`, `SUBGOALS_KIND`). The episodes a run learns from
are selected and split by `distill.dataset.build_split`. torch and matplotlib load inside the
functions, so the app can import the names here cheaply.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Iterator, Sequence, TypeVar

from distill.checkpoint import save_checkpoint, update_training

PLOT = "training.png"  # in the output directory: loss and validation figures per epoch
FRAME_CACHE = "frame_cache"  # in the output directory, unless the data config names another
# The kinds of checkpoint in storage's policies table (`register_policy`, `list_policies`).
HIGH_LEVEL_KIND = "high_level"
SUBGOALS_KIND = "subgoals"

C = TypeVar("C")


# ----------------------------------------------------------------------------- command line

def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """Where the logs come from and where the checkpoint goes: `--db`, `--out`, `--tasks`."""
    p.add_argument("--db", default=None, help="database URL or SQLite file (default: $COACHLAB_DB, else the user "
                                              "data dir)")
    p.add_argument("--out", required=True, help="the checkpoint directory to write")
    p.add_argument("--tasks", default=None, help="comma list of task families (or parts of task texts); default all")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """`--seed`, `--no-progress`, `--json`."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", dest="no_progress")
    p.add_argument("--json", action="store_true")


def parse_tasks(text: str | None) -> list[str] | None:
    """The `--tasks` comma list as a list (blanks dropped); None (all tasks) when not given."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


# ----------------------------------------------------------------------------- around the loop

def with_frame_cache(data_config: C, out: Path) -> C:
    """The data config with its `cache_dir` set to the output directory's frame cache when it names none."""
    if data_config.cache_dir is None:  # type: ignore[attr-defined]
        return replace(data_config, cache_dir=str(out / FRAME_CACHE))  # type: ignore[type-var]
    return data_config


@contextmanager
def run_database(db_url: str | None) -> Iterator[Any]:
    """The database at `db_url` (None: the configured default), opened only to read (a run reads the logs;
    registering opens it for writing at the end), closed when the run ends however it ends. An
    unreachable, unreadable or missing database is a `storage.errors.StorageError`."""
    from storage import open_database
    from storage.database import READ_ONLY

    db = open_database(db_url, READ_ONLY)
    try:
        yield db
    finally:
        db.close()


@contextmanager
def epoch_plot(out: Path) -> Iterator[Sequence[Any]]:
    """Two matplotlib axes side by side to draw per-epoch series on; on leaving, each gets an epoch
    axis (whole numbers), a grid and a legend, and the figure is written to `out / PLOT` (PNG,
    `out` created). Nothing is written when the drawing raises."""
    import matplotlib

    matplotlib.use("Agg")  # files only: training runs headless
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    try:
        yield axes
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / PLOT, dpi=100)
    finally:
        plt.close(fig)


def plot_series(ax: Any, epochs: Sequence[int], values: Sequence[float | None], **style: Any) -> None:
    """One line with markers of `values` over `epochs`, leaving out the epochs without a value (None);
    nothing when none has one. `style` goes to matplotlib (label, color, ...)."""
    pts = [(e, y) for e, y in zip(epochs, values) if y is not None]
    if pts:
        ax.plot(*zip(*pts), marker="o", **style)


def training_record(info: Any, data_config: Any, config: Any, metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What `training.json` holds: the ids of the training and validation episodes (`info` from the
    dataset), the data config (without its machine-local cache directory), the rest of the run's
    config, the metrics and any `extra` fields."""
    return {"episode_ids": info.train_episode_ids, "val_episode_ids": info.val_episode_ids,
            "dataset": {**asdict(data_config), "cache_dir": None},
            "train": {k: v for k, v in asdict(config).items() if k != "data"}, "metrics": metrics, **extra}


def save_and_register(db: Any, out: Path, model: Any, training: dict[str, Any], *, fmt: str, command: str, kind: str,
                      register: bool, episode_ids: list[int], summary: dict[str, Any]) -> dict[str, Any]:
    """Write the checkpoint (format `fmt`) to `out` and, when `register`, file it in storage as a
    policy of `kind` learned from `episode_ids` with the metrics `summary`, its id added to the
    training record. Returns the fields a run adds to its metrics: `policy_id` (when registered),
    `checkpoint` and `plot` (paths). An unwritable `out` is a one-sentence DistillError; `command`
    (the command that writes such checkpoints) is named in the error should the record be unreadable."""
    from storage import open_database, register_policy
    from storage.errors import ReadOnlyDatabase

    save_checkpoint(out, model, training, fmt)
    fields: dict[str, Any] = {}
    if register:
        try:  # the run read through a read-only handle; registering is its one write
            with open_database(db.url) as writable:
                fields["policy_id"] = register_policy(writable, kind, str(out.resolve()), episode_ids, summary)
            update_training(out, command, policy_id=fields["policy_id"])
        except ReadOnlyDatabase as err:  # the checkpoint is still written and usable by its folder
            fields["not_registered"] = f"{err} The checkpoint is saved; use it by its folder."
    fields.update(checkpoint=str(out), plot=str(out / PLOT))
    return fields
