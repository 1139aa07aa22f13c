"""The checkpoint directory of a distilled model, whatever the model: saving it and loading it.

Layout: `model.safetensors` (the weights), `config.json` (the model config tagged with its format,
for the high-level policy its vocabulary included), `training.json` (the dataset config, the
ids of the episodes it learned from, the metrics and, once registered, the storage id of the
policy). Every way a checkpoint can be wrong (missing directory or file, corrupt weights or JSON,
weights that do not fit the config, a checkpoint of another format) is a `DistillError` with one
sentence naming the command that writes such checkpoints.

This module knows no particular model: each model's loader passes its format tag and how to build
the network from its config (`distill/learned_policy.py` for the high-level policy,
`distill/learned_subgoals.py` for the subgoal image model). A model only needs `state_dict`,
`load_state_dict`, `eval` and a `cfg` with `to_dict`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from distill.dataset import DistillError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAINING = "training.json"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode, its config and the training record."""

    model: Any  # HighLevelNet, SubgoalUNet
    config: Any  # its config dataclass
    training: dict[str, Any]
    directory: str

    @property
    def policy_id(self) -> int | None:
        return self.training.get("policy_id")

    @property
    def episode_ids(self) -> list[int]:
        return list(self.training.get("episode_ids", []))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def save_checkpoint(directory: str | os.PathLike, model: Any, training: dict[str, Any], fmt: str) -> Path:
    """Write the weights, the model config (tagged with the format `fmt`) and the training record (JSON)
    into `directory` (created); returns it. An unwritable directory is a one-sentence DistillError."""
    from safetensors.torch import save_file

    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        tmp = out / f"{WEIGHTS}.{os.getpid()}.tmp"
        save_file(state, str(tmp), metadata={"format": fmt})
        os.replace(tmp, out / WEIGHTS)
        _write_json(out / CONFIG, {"format": fmt, **model.cfg.to_dict()})
        _write_json(out / TRAINING, training)
    except OSError as err:
        raise DistillError(f"Cannot write the checkpoint to {out}: {err.strerror or err}; choose a writable --out "
                           "directory.") from None
    return out


def update_training(directory: str | os.PathLike, command: str, **fields: Any) -> None:
    """Add fields (e.g. the registered policy id) to a saved checkpoint's training record; a missing or
    corrupt record is a DistillError naming `command`, the command that writes such checkpoints."""
    path = Path(directory) / TRAINING
    data = _read_json(path, Path(directory), command)
    data.update(fields)
    _write_json(path, data)


def _read_json(path: Path, directory: Path, command: str) -> dict[str, Any]:
    if not path.is_file():
        raise DistillError(f"The checkpoint {directory} has no {path.name}: point at a directory written "
                           f"by `{command}`.")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise DistillError(f"The checkpoint file {path} is corrupt (not valid JSON): run `{command}` again.") from None
    if not isinstance(data, dict):
        raise DistillError(f"The checkpoint file {path} is corrupt (not a JSON object): run `{command}` again.")
    return data


def load_model(directory: str | os.PathLike, fmt: str, build: Callable[[dict[str, Any]], Any], command: str) -> Checkpoint:
    """A model of format `fmt` built by `build(config)` and loaded from `directory` (eval mode); every way
    the directory can be wrong is a DistillError naming `command`, the command that writes such checkpoints."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = Path(directory)
    if not d.is_dir():
        raise DistillError(f"There is no checkpoint directory at {d}: give the --out directory of a `{command}` run.")
    raw = _read_json(d / CONFIG, d, command)
    if raw.pop("format", None) != fmt:
        raise DistillError(f"The checkpoint at {d} is not a {fmt} checkpoint: point at the output of `{command}` "
                           "run with this version of coachlab.")
    try:
        model = build(raw)
    except (TypeError, ValueError, RuntimeError) as err:
        raise DistillError(f"The checkpoint config {d / CONFIG} does not describe a model this version can build "
                           f"({str(err).splitlines()[0]}): run `{command}` again.") from None
    training = _read_json(d / TRAINING, d, command) if (d / TRAINING).exists() else {}
    weights = d / WEIGHTS
    if not weights.is_file():
        raise DistillError(f"The checkpoint at {d} has no {WEIGHTS}: the training run did not finish, run `{command}` again.")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError):
        raise DistillError(f"The weights file {weights} is corrupt: run `{command}` again.") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()
        detail = (first[1] if len(first) > 1 else first[0]).strip()
        raise DistillError(f"The weights in {weights} do not match the model in {CONFIG} ({detail[:160]}): "
                           f"use the config and weights of the same run, or run `{command}` again if the checkpoint "
                           "comes from an older coachlab.") from None
    if any(not torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise DistillError(f"The weights file {weights} holds NaN or infinite values: run `{command}` again.")
    model.eval()
    return Checkpoint(model=model, config=model.cfg, training=training, directory=str(d))
