"""`coachlab export`: write the episodes a filter selects as a LeRobotDataset (docs/export.md).

The filters are those of `coachlab episodes` (no limit by default); errors are one sentence from
`storage.export.ExportError` (nothing selected, a non-empty or unwritable --out, no video library).
"""

from __future__ import annotations

import argparse
from typing import Any

from app.episodes_command import FILTERS, _positive, add_filters
from app.errors import UserError

FORMATS = ("lerobot",)


def cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from storage import open_database
    from storage.database import READ_ONLY
    from storage.export import ExportConfig, export_lerobot

    if args.format not in FORMATS:
        raise UserError(f"Unknown export format '{args.format}': use one of {', '.join(FORMATS)}.")
    config = ExportConfig(fps=args.fps, control_mode=args.control_mode, language=args.language)
    config.checked()
    db = open_database(args.db, READ_ONLY)  # only reads: works on a read-only mount
    try:
        filters = {k: getattr(args, k) for k in FILTERS}
        report = export_lerobot(db, args.out, config, filters, progress=not args.no_progress)
        return {"format": args.format, "database": db.display_url, **report.to_dict()}
    finally:
        db.close()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `export` to the coachlab command line."""
    p = subparsers.add_parser("export", help="write episodes as a LeRobotDataset (v3) for VLA fine-tuning")
    add_filters(p, limit=None)
    p.add_argument("--format", default="lerobot", help="lerobot (LeRobotDataset, codebase v3.0)")
    p.add_argument("--out", required=True, help="a new or empty folder to write the dataset into")
    p.add_argument("--fps", type=_positive, default=None, help="frames per second (default: the recording rate)")
    p.add_argument("--control-mode", choices=("ee", "joint"), default=None, dest="control_mode",
                   help="the one control mode of the dataset (default: the one most episodes used)")
    p.add_argument("--language", choices=("columns", "index"), default="columns",
                   help="subtasks as LeRobot's language_persistent/language_events rows (columns, current "
                        "LeRobot) or as subtask_index + meta/subtasks.parquet (index, LeRobot 0.4)")
    p.add_argument("--no-progress", action="store_true", dest="no_progress")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)
