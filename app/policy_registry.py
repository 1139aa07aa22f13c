"""Which registered high-level policy a checkpoint folder is, in the database episodes go to."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def policy_id_in(db: Any, checkpoint_dir: str) -> int:
    """The checkpoint's id in `db`, registering it there if it is new (a checkpoint made elsewhere)."""
    from distill.learned_policy import load_checkpoint
    from distill.run import HIGH_LEVEL_KIND
    from storage import list_policies, register_policy

    path = str(Path(checkpoint_dir).resolve())
    for known in list_policies(db, kind=HIGH_LEVEL_KIND):
        if str(Path(known.checkpoint_path).resolve()) == path:
            return known.id
    ckpt = load_checkpoint(path)  # already loaded once: any problem was reported then
    return register_policy(db, HIGH_LEVEL_KIND, path, ckpt.episode_ids, ckpt.training.get("metrics", {}))
