"""``work-items`` and ``cmdb``: read-only listings of the embedded backend's records and the parked deliveries."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any

from receiver.cli.operations import close_work_item_command
from receiver.cli.options import listing_parser, parse_with_database
from receiver.cli.tables import print_configuration_items, print_json, print_parked, print_work_items
from secure_export.contract import ENV_DB


def work_items(argv: list[str]) -> int:
    prog = "secure-export work-items"
    if argv and argv[0] in ("resolve", "close"):
        return close_work_item_command(argv[0], argv[1:])
    parser = listing_parser(
        prog,
        "List the embedded backend's work items (and, in the table, deliveries parked as "
        "failed in the inbox). --json prints a JSON array (fields: docs/work-items.md).",
    )
    parser.add_argument(
        "--failed",
        action="store_true",
        help="list only the parked (failed) inbox deliveries that never became work items",
    )
    parser.add_argument(
        "--group", metavar="NAME", help="only work items of this assignment group (case-insensitive; '-' for none)"
    )
    parser.add_argument(
        "--state", metavar="STATE", type=_work_item_state, help="only work items in this state: New, Resolved or Closed"
    )
    parsed = parse_with_database(prog, parser, argv)
    if isinstance(parsed, int):
        return parsed
    args, db = parsed
    from receiver.itsm.embedded.queries import list_work_items

    if args.failed:
        return _read(prog, db, lambda: print_parked(_parked(db), as_json=args.json))

    def show() -> None:
        items = filter_work_items(list_work_items(db), group=args.group, state=args.state)
        if args.json:
            print_json(items)
            return
        print_work_items(items)
        sys.stdout.write("\n")
        print_parked(_parked(db), as_json=False)

    return _read(prog, db, show)


WORK_ITEM_STATES = ("New", "Resolved", "Closed")


def _work_item_state(value: str) -> str:
    canonical = next((state for state in WORK_ITEM_STATES if state.casefold() == value.strip().casefold()), None)
    if canonical is None:
        raise argparse.ArgumentTypeError(f"unknown state {value!r}; use {', '.join(WORK_ITEM_STATES)}")
    return canonical


def filter_work_items(
    items: Sequence[dict[str, Any]], *, group: str | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    """The items of one assignment group (``-``: none) and/or one state; names compare case-insensitively."""
    wanted = group.strip().casefold() if group is not None else None
    selected = []
    for item in items:
        if state is not None and item["state"] != state:
            continue
        if wanted is not None:
            have = (item.get("assignment_group") or "").casefold()
            if have != ("" if wanted == "-" else wanted):
                continue
        selected.append(item)
    return selected


def _parked(db: str) -> list[dict[str, Any]]:
    from receiver.storage.readers import list_parked

    return list_parked(db)


def cmdb(argv: list[str]) -> int:
    parser = listing_parser(
        "secure-export cmdb",
        "List the embedded backend's configuration items (CIs) bound from alerts' "
        "configurationItems. --json prints a JSON array (fields: docs/work-items.md).",
    )
    parsed = parse_with_database("secure-export cmdb", parser, argv)
    if isinstance(parsed, int):
        return parsed
    args, db = parsed
    from receiver.itsm.embedded.queries import list_configuration_items

    def show() -> None:
        cis = list_configuration_items(db)
        if args.json:
            print_json(cis)
        else:
            print_configuration_items(cis)

    return _read("secure-export cmdb", db, show)


def _read(prog: str, db: str, show: Callable[[], None]) -> int:
    """Run a read-only listing, turning database problems into a message and exit status 1."""
    from receiver.storage import is_postgres
    from receiver.storage.sqlite.connection import DatabaseNotFoundError

    if is_postgres(db):
        from receiver.storage.readers import read_postgres

        return read_postgres(prog, db, show)
    try:
        if not os.path.isfile(db):
            raise DatabaseNotFoundError(db)
        if not _is_ours(db):
            sys.stderr.write(
                f"{prog}: {db!r} is not a secure-export database (it has neither an inbox nor work items); "
                f"check --db or ${ENV_DB}\n"
            )
            return 1
        show()
    except DatabaseNotFoundError:
        sys.stderr.write(
            f"{prog}: no database at {db!r}. Point --db (or ${ENV_DB}) at the receiver's SQLite "
            "file; it is created by 'secure-export serve' or kept by 'secure-export demo --db PATH'.\n"
        )
        return 1
    except sqlite3.DatabaseError as error:
        sys.stderr.write(f"{prog}: cannot read {db!r} as the receiver's SQLite database: {error}\n")
        return 1
    return 0


def _is_ours(db: str) -> bool:
    """Whether the file has this product's tables (an empty file is SQLite's, and not ours)."""
    from pathlib import Path

    conn = sqlite3.connect(f"{Path(db).absolute().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    return bool(names & {"inbox", "work_items", "configuration_items"})
