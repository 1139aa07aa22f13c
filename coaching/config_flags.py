"""Command-line flags derived from config dataclasses, so each default is stated once: in the dataclass.
Shared by the app's commands and distill's trainers (both may import `coaching`).

A field's flag is `--field-name`, its type the field's annotation (bool fields are switches), its
default the dataclass's, and its help the field's `metadata["help"]` with the default appended.
Written by hand rather than with tyro or draccus because the CLI keeps argparse's subcommands and
its existing flag names (a few flags are not fields, e.g. `--json`), which those libraries would
rename or take over; this is the small shared helper the issue allows.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Sequence, TypeVar

C = TypeVar("C")


def help_text(text: str) -> dict[str, str]:
    """Field metadata carrying a flag's help: `x: int = field(default=1, metadata=help_text("..."))`."""
    return {"help": text}


def _plain_type(hint: Any) -> type:
    """`int` for `int`, `int | None` and `Optional[int]`; str for anything else."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    hint = args[0] if args else hint
    return hint if hint in (int, float, str, bool) else str


def add_flags(parser: argparse.ArgumentParser, config_cls: type, names: Sequence[str],
              flag_names: dict[str, str] | None = None) -> None:
    """One flag per field in `names` (`flag_names` maps a field to another flag, e.g. sim_noise -> --noise)."""
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    defaults = config_cls()
    for name in names:
        default, kind = getattr(defaults, name), _plain_type(hints[name])
        flag = "--" + (flag_names or {}).get(name, name).replace("_", "-")
        help_ = fields[name].metadata.get("help", "")
        if kind is bool:
            parser.add_argument(flag, dest=name, action="store_true", default=default, help=help_)
        else:
            shown = f" (default: {default})" if default is not None else ""
            parser.add_argument(flag, dest=name, type=kind, default=default, help=help_ + shown)


def from_flags(config_cls: type[C], args: argparse.Namespace, names: Sequence[str], **values: Any) -> C:
    """The config with the parsed flags of `names`, plus `values` for fields that are not flags."""
    return config_cls(**{name: getattr(args, name) for name in names}, **values)
