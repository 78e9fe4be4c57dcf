"""``trace``, ``replay``, ``discard`` and ``work-items resolve|close``: operators' actions on a receiver's database."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Callable
from typing import Any

from receiver.cli.options import db_option, parse_with_database
from receiver.cli.tables import print_json, print_trace


def _act(prog: str, db: str, action: Callable[[], int | None]) -> int:
    """Run an operation; an :class:`~receiver.storage.records.OpsError` becomes its message and exit 1.

    ``db`` is the location :func:`~receiver.cli.options.parse_with_database` read (an unsupported URL
    scheme already exited 2 there with the receiver's message), so it is not read a second time here.
    A PostgreSQL database that cannot be reached is an ``OpsError`` too (``DatabaseUnavailable``).
    """
    from receiver.storage.records import OpsError

    try:
        status = action()
    except OpsError as error:
        sys.stderr.write(f"{prog}: {error}\n")
        return 1
    except sqlite3.OperationalError as error:
        sys.stderr.write(f"{prog}: the database {db!r} is busy or unwritable ({error}); try again\n")
        return 1
    return status or 0


def _ids_parser(prog: str, description: str, *, allow_all: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    if allow_all:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--id",
            dest="ids",
            metavar="N",
            type=int,
            nargs="+",
            action="extend",
            help="delivery ids (from 'work-items --failed' or 'trace')",
        )
        which.add_argument("--all", action="store_true", help="every parked delivery")
    else:
        parser.add_argument(
            "--id",
            dest="ids",
            metavar="N",
            type=int,
            nargs="+",
            action="extend",
            required=True,
            help="delivery ids (from 'work-items --failed' or 'trace')",
        )
    parser.add_argument("--by", default=None, help="who acts, kept on the row (default: the OS user)")
    db_option(parser)
    parser.add_argument("--json", action="store_true", help='print {"changed": [...], "skipped": [...]}')
    return parser


def _report(prog: str, verb: str, result: Any, as_json: bool) -> int:
    if as_json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif result.changed:
        sys.stdout.write(
            f"{verb} {len(result.changed)} deliver{'y' if len(result.changed) == 1 else 'ies'}: "
            f"{', '.join(str(i) for i in result.changed)}\n"
        )
    else:
        sys.stdout.write(f"nothing {verb.lower()}\n")
    for row_id, why in result.skipped.items():
        sys.stderr.write(f"{prog}: delivery {row_id} not changed: {why}\n")
    return 1 if result.skipped else 0


def trace_command(argv: list[str]) -> int:
    prog = "secure-export trace"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Where did my alert go? Every delivery of the alert (Fired, Resolved: when received, "
            "state, attempts, last error) and the work item or ITSM incident it became. Exit 1 when "
            "the database holds no delivery of it."
        ),
    )
    parser.add_argument("alert_id", metavar="ALERT_ID", help="essentials.alertId (the full /subscriptions/... id)")
    db_option(parser)
    parser.add_argument("--json", action="store_true", help="print the trace as JSON (docs/design.md)")
    parsed = parse_with_database(prog, parser, argv)
    if isinstance(parsed, int):
        return parsed
    args, db = parsed
    from receiver.storage.operations import trace

    def show() -> int:
        result = trace(db, args.alert_id, details=not args.json)
        if args.json:
            json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
            sys.stdout.write("\n")
        else:
            print_trace(result)
        return 0 if result["deliveries"] else 1

    return _act(prog, db, show)


def replay_command(argv: list[str]) -> int:
    prog = "secure-export replay"
    parser = _ids_parser(
        prog,
        "Move parked deliveries back to pending with a fresh attempt count; a running receiver "
        "dispatches them within SECURE_EXPORT_OPS_POLL_SECONDS (no restart). Backends are "
        "idempotent, so a replay never duplicates a work item. Exit 1 when an id was not parked.",
        allow_all=True,
    )
    parsed = parse_with_database(prog, parser, argv)
    if isinstance(parsed, int):
        return parsed
    args, db = parsed
    from receiver.storage.operations import replay

    return _act(
        prog, db, lambda: _report(prog, "Replayed", replay(db, None if args.all else args.ids, by=args.by), args.json)
    )


def discard_command(argv: list[str]) -> int:
    prog = "secure-export discard"
    parser = _ids_parser(
        prog,
        "Give up on parked deliveries: they are marked discarded with who and why (never deleted "
        "silently; kept for SECURE_EXPORT_INBOX_DISCARDED_RETENTION_DAYS). Exit 1 when an id was not parked.",
        allow_all=False,
    )
    parser.add_argument("--reason", required=True, help="why the delivery is given up (kept on the row)")
    parsed = parse_with_database(prog, parser, argv)
    if isinstance(parsed, int):
        return parsed
    args, db = parsed
    from receiver.storage.operations import discard

    return _act(
        prog, db, lambda: _report(prog, "Discarded", discard(db, args.ids, reason=args.reason, by=args.by), args.json)
    )


def close_work_item_command(action: str, argv: list[str]) -> int:
    prog = f"secure-export work-items {action}"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Resolve (New -> Resolved) or close (New or Resolved -> Closed; final: a later alert opens a "
            "new work item) one embedded work item, with a note saying what was done. Works while the "
            "receiver runs."
        ),
    )
    parser.add_argument("number", metavar="NUMBER", help="the work item's number, e.g. INC0000001")
    parser.add_argument("--note", required=True, help="what was done (kept in the work item's notes)")
    parser.add_argument("--by", default=None, help="who acts (default: the OS user)")
    db_option(parser)
    parser.add_argument("--json", action="store_true", help="print the work item as JSON")
    parsed = parse_with_database(prog, parser, argv)
    if isinstance(parsed, int):
        return parsed
    args, db = parsed
    from receiver.itsm.embedded.operations import close_work_item

    def act() -> None:
        item = close_work_item(db, args.number, action=action, note=args.note, by=args.by)
        if args.json:
            print_json([item])
        else:
            sys.stdout.write(f"{item['number']} is {item['state']}.\n")

    return _act(prog, db, act)
