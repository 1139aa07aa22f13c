"""`coachlab episodes`: list recorded episodes with filters, or show one (`coachlab episodes show ID`).

Handlers return dicts (printed as JSON with --json) and raise `storage.errors.StorageError` with a
one-sentence message for anything a user can get wrong (bad URL, unknown id, bad filter value).
Storage is imported inside the handlers so other commands do not pay for SQLAlchemy.
"""

from __future__ import annotations

import argparse
from datetime import date, datetime
from typing import Any


def _date(text: str) -> str:
    try:
        (date.fromisoformat if len(text) == 10 else datetime.fromisoformat)(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    return text


def _quality(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 5:
        raise argparse.ArgumentTypeError(f"quality is a whole number from 1 to 5, not '{text}'")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, not '{text}'")
    return int(text)


DB_HELP = "database URL or SQLite file (default: $COACHLAB_DB, else coachlab.db in the user's data dir)"
FILTERS = ("task", "status", "mode", "min_quality", "since", "until", "limit")  # `list_episodes` keywords


def add_filters(p: argparse.ArgumentParser, limit: int | None) -> None:
    """The episode filters every command that selects episodes takes (`episodes`, `export`); their values
    are `list_episodes` keywords (`FILTERS`). `limit`: the default number of the newest kept (None: all)."""
    from storage.vocab import MODES, STATUSES  # light: no SQLAlchemy

    p.add_argument("--db", default=None, help=DB_HELP)
    p.add_argument("--task", help="a task family, or any part of the task text")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--min-quality", type=_quality, dest="min_quality")
    p.add_argument("--since", type=_date, help="started on or after (YYYY-MM-DD or ISO time, UTC)")
    p.add_argument("--until", type=_date, help="started on or before (a bare date includes that day)")
    p.add_argument("--limit", type=_positive, default=limit, help="at most this many of the newest episodes")


def cmd_episodes(args: argparse.Namespace) -> dict[str, Any]:
    from storage import list_episodes, open_database
    from storage.database import READ_ONLY

    db = open_database(args.db, READ_ONLY)  # only reads: works on a read-only mount, creates nothing
    try:
        found = list_episodes(db, **{k: getattr(args, k) for k in FILTERS}, discarded=args.discarded)
        return {"database": db.display_url, "count": len(found), "episodes": [e.to_dict() for e in found]}
    finally:
        db.close()


def cmd_episodes_show(args: argparse.Namespace) -> dict[str, Any]:
    from storage import load_episode, open_database
    from storage.database import READ_ONLY

    db = open_database(args.db, READ_ONLY)
    try:
        return load_episode(db, args.id).to_dict()
    finally:
        db.close()


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add `episodes` (and its `show` subcommand) to the coachlab command line."""
    p = subparsers.add_parser("episodes", help="list recorded episodes, or `episodes show ID`")
    add_filters(p, limit=100)
    p.add_argument("--discarded", action="store_true",
                   help="list only the episodes a person discarded (left out otherwise, as distillation leaves them out)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_episodes)

    sub = p.add_subparsers(dest="episodes_command", metavar="show")
    show = sub.add_parser("show", help="one episode with its segments, events and frame counts")
    show.add_argument("id", type=_positive)
    # SUPPRESS: these may also be given before `show`; a default here would overwrite that value.
    show.add_argument("--db", default=argparse.SUPPRESS, help=DB_HELP)
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    show.set_defaults(func=cmd_episodes_show)
