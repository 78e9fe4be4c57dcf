"""The receiver's commands: ``serve``, ``demo``, ``work-items`` and ``cmdb``.

``secure_export.cli`` dispatches here with the command name and its remaining arguments. Every
command has ``--help``; wrong usage or a ``--db`` that is not a SQLite file path (a URL) exits 2,
a missing or unreadable database exits 1 with a message that says what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

DEFAULT_DB = "./secure-export.db"
DB_ENV = "SECURE_EXPORT_DB"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080

_TITLE_WIDTH = 60
_CI_WIDTH = 40


def main(command: str, argv: list[str]) -> int:
    """Run one receiver command and return its exit status."""
    commands: dict[str, Callable[[list[str]], int]] = {
        "serve": _serve,
        "demo": _demo,
        "work-items": _work_items,
        "cmdb": _cmdb,
    }
    handler = commands.get(command)
    if handler is None:
        sys.stderr.write(f"secure-export: {command!r} is not a receiver command ({', '.join(commands)})\n")
        return 2
    try:
        return handler(argv)
    except BrokenPipeError:
        # `secure-export work-items | head` closes the pipe early; that is not an error.
        sys.stderr.close()
        return 0


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """Parse, turning argparse's ``SystemExit`` (``--help`` → 0, bad usage → 2) into a status."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def _listing_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every listing command shares: ``--json`` and ``--db``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help=f"SQLite file to read (default: ${DB_ENV}, else {DEFAULT_DB})",
    )
    return parser


def _resolve_db(value: str | None) -> str:
    return value or os.environ.get(DB_ENV) or DEFAULT_DB


def _checked_db(prog: str, value: str, *, new_file: bool = False, source: str = f"--db / ${DB_ENV}") -> str | int:
    """``value`` as a SQLite file path, or exit status 2 after one line saying why it is refused.

    The same rule as ``serve``'s ``SECURE_EXPORT_DB`` (:mod:`receiver.database`); ``new_file``
    also requires the directory the file is to be created in.
    """
    from receiver.database import database_location

    try:
        location = database_location(value)
        if new_file:
            location.require_directory()
    except ValueError as error:
        sys.stderr.write(f"{prog}: {source}: {error}\n")
        return 2
    return location.path


# -- serve -----------------------------------------------------------------------------------


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="secure-export serve",
        description=(
            "Run the receiver: POST /api/alerts (Azure AD-authenticated secure webhook), "
            "/healthz, /readyz, /metrics. Configuration comes from SECURE_EXPORT_* environment "
            "variables (SECURE_EXPORT_TENANT_ID and SECURE_EXPORT_AUDIENCES are required)."
        ),
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    if not 0 <= args.port <= 65535:
        sys.stderr.write(f"secure-export serve: --port must be 0..65535, not {args.port}\n")
        return 2
    from receiver.server import serve

    return serve(args.host, args.port)


# -- demo ------------------------------------------------------------------------------------


def _demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="secure-export demo",
        description=(
            "The whole path on this machine, no cloud: a local key pair and JWKS stand in for "
            "Azure AD, a real receiver with the embedded backend runs on 127.0.0.1, sample Azure "
            "Monitor alerts are fired and then resolved over HTTP, and the resulting work items "
            "and configuration items are printed. Authentication stays on throughout."
        ),
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="keep the demo's SQLite file here (default: a temporary file, removed afterwards); "
        "an existing file gets a new set of alerts added",
    )
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    from receiver.demo import run_demo

    if args.db is None:
        return run_demo()
    db = _checked_db("secure-export demo", args.db, new_file=True, source="--db")
    return db if isinstance(db, int) else run_demo(db_path=db)


# -- work-items ------------------------------------------------------------------------------


def _work_items(argv: list[str]) -> int:
    prog = "secure-export work-items"
    parser = _listing_parser(
        prog,
        "List the embedded backend's work items (and, in the table, deliveries parked as "
        "failed in the inbox). --json prints a JSON array (fields: docs/work-items.md).",
    )
    parser.add_argument(
        "--failed",
        action="store_true",
        help="list only the parked (failed) inbox deliveries that never became work items",
    )
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    db = _checked_db(prog, _resolve_db(args.db))
    if isinstance(db, int):
        return db
    from receiver.itsm.embedded import list_work_items

    if args.failed:
        return _read(prog, db, lambda: _print_parked(_parked(db), as_json=args.json))

    def show() -> None:
        items = list_work_items(db)
        if args.json:
            _print_json(items)
            return
        print_work_items(items)
        sys.stdout.write("\n")
        _print_parked(_parked(db), as_json=False)

    return _read(prog, db, show)


def _parked(db: str) -> list[dict[str, Any]]:
    from receiver.inbox import list_parked

    return list_parked(db)


def _print_parked(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        _print_json(rows)
        return
    if not _heading("Parked deliveries", len(rows), sys.stdout):
        return
    sys.stdout.write("  accepted (202) but never applied: the backend refused them or kept failing\n")
    columns = list(dict.fromkeys(key for row in rows for key in row if key not in ("body", "payload")))
    _write_table(columns, [[_cell(row.get(column)) for column in columns] for row in rows])


# -- cmdb --------------------------------------------------------------------------------------


def _cmdb(argv: list[str]) -> int:
    parser = _listing_parser(
        "secure-export cmdb",
        "List the embedded backend's configuration items (CIs) bound from alerts' "
        "configurationItems. --json prints a JSON array (fields: docs/work-items.md).",
    )
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    db = _checked_db("secure-export cmdb", _resolve_db(args.db))
    if isinstance(db, int):
        return db
    from receiver.itsm.embedded import list_configuration_items

    def show() -> None:
        cis = list_configuration_items(db)
        if args.json:
            _print_json(cis)
        else:
            print_configuration_items(cis)

    return _read("secure-export cmdb", db, show)


# -- output ------------------------------------------------------------------------------------


def _read(prog: str, db: str, show: Callable[[], None]) -> int:
    """Run a read-only listing, turning database problems into a message and exit status 1."""
    from receiver.itsm.embedded import DatabaseNotFoundError

    try:
        if not os.path.isfile(db):
            raise DatabaseNotFoundError(db)
        show()
    except DatabaseNotFoundError:
        sys.stderr.write(
            f"{prog}: no database at {db!r}. Point --db (or ${DB_ENV}) at the receiver's SQLite "
            "file; it is created by 'secure-export serve' or kept by 'secure-export demo --db PATH'.\n"
        )
        return 1
    except sqlite3.DatabaseError as error:
        sys.stderr.write(f"{prog}: cannot read {db!r} as the receiver's SQLite database: {error}\n")
        return 1
    return 0


def _print_json(records: list[dict[str, Any]]) -> None:
    json.dump(records, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def print_work_items(items: Sequence[dict[str, Any]], out: TextIO | None = None) -> None:
    """Write work items as a readable table (what ``work-items`` prints without ``--json``)."""
    out = out or sys.stdout
    if not _heading("Work items", len(items), out):
        return
    headers = ["NUMBER", "STATE", "SEV", "PRI", "OCC", "OPENED", "RESOLVED", "TITLE", "CIS"]
    rows = [
        [
            item["number"],
            item["state"],
            item["severity"] or "-",
            str(item["priority"]),
            str(item["occurrences"]),
            _short_time(item["opened_at"]),
            _short_time(item["resolved_at"]),
            _clip(item["title"], _TITLE_WIDTH),
            _clip(", ".join(item["configuration_items"]) or "-", _CI_WIDTH),
        ]
        for item in items
    ]
    _write_table(headers, rows, out)


def print_configuration_items(cis: Sequence[dict[str, Any]], out: TextIO | None = None) -> None:
    """Write CIs as a readable table (what ``cmdb`` prints without ``--json``)."""
    out = out or sys.stdout
    if not _heading("Configuration items", len(cis), out):
        return
    headers = ["ID", "NAME", "FIRST SEEN", "LAST SEEN", "AZURE RESOURCE ID"]
    rows = [
        [
            str(ci["id"]),
            ci["name"],
            _short_time(ci["first_seen"]),
            _short_time(ci["last_seen"]),
            ci["azure_resource_id"] or "- (no matching alertTargetID)",
        ]
        for ci in cis
    ]
    _write_table(headers, rows, out)


def _heading(title: str, count: int, out: TextIO) -> bool:
    """Write a listing's ``Title (count)`` line, and ``none`` under it when empty; whether rows follow."""
    out.write(f"{title} ({count})\n")
    if not count:
        out.write("  none\n")
    return count > 0


def _write_table(headers: list[str], rows: list[list[str]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for line in [headers, ["-" * width for width in widths], *rows]:
        out.write(
            "  "
            + "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
        out.write("\n")


def _short_time(value: str | None) -> str:
    """``2026-11-26T06:00:00.000Z`` → ``2026-11-26 06:00:00Z`` (tables only; JSON keeps ISO-8601)."""
    if not value:
        return "-"
    return value[:19].replace("T", " ") + "Z"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return _clip(", ".join(str(v) for v in value), _CI_WIDTH)
    return _clip(str(value), _TITLE_WIDTH)
