"""The receiver's commands: ``serve``, ``demo``, ``work-items``, ``cmdb``, ``trace``, ``replay``, ``discard``.

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
_GROUP_WIDTH = 24


def main(command: str, argv: list[str]) -> int:
    """Run one receiver command and return its exit status."""
    commands: dict[str, Callable[[list[str]], int]] = {
        "serve": _serve,
        "demo": _demo,
        "work-items": _work_items,
        "cmdb": _cmdb,
        "trace": _trace,
        "replay": _replay,
        "discard": _discard,
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

    The same rule as ``serve``'s ``SECURE_EXPORT_DB`` (:mod:`receiver.storage.location`); ``new_file``
    also requires the directory the file is to be created in.
    """
    from receiver.storage.location import PostgresDatabase, database_location

    try:
        location = database_location(value)
        if new_file:
            if isinstance(location, PostgresDatabase):
                raise ValueError("this command keeps its data in a SQLite file; give a file path such as ./demo.db")
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
    from receiver.http.server import serve

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
    from receiver.demo.run import run_demo

    if args.db is None:
        return run_demo()
    db = _checked_db("secure-export demo", args.db, new_file=True, source="--db")
    return db if isinstance(db, int) else run_demo(db_path=db)


# -- work-items ------------------------------------------------------------------------------


def _work_items(argv: list[str]) -> int:
    prog = "secure-export work-items"
    if argv and argv[0] in ("resolve", "close"):
        return _close_work_item(argv[0], argv[1:])
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
    parser.add_argument(
        "--group", metavar="NAME", help="only work items of this assignment group (case-insensitive; '-' for none)"
    )
    parser.add_argument(
        "--state", metavar="STATE", type=_work_item_state, help="only work items in this state: New, Resolved or Closed"
    )
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    db = _checked_db(prog, _resolve_db(args.db))
    if isinstance(db, int):
        return db
    from receiver.storage.readers import list_work_items

    if args.failed:
        return _read(prog, db, lambda: _print_parked(_parked(db), as_json=args.json))

    def show() -> None:
        items = filter_work_items(list_work_items(db), group=args.group, state=args.state)
        if args.json:
            _print_json(items)
            return
        print_work_items(items)
        sys.stdout.write("\n")
        _print_parked(_parked(db), as_json=False)

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


def _print_parked(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        _print_json(rows)
        return
    if not _heading("Parked deliveries", len(rows), sys.stdout):
        return
    sys.stdout.write("  accepted (202) but never applied: the backend refused them or kept failing\n")
    columns = list(dict.fromkeys(key for row in rows for key in row if key not in ("body", "payload")))
    _write_table(columns, [[_cell(row.get(column)) for column in columns] for row in rows])


def _close_work_item(action: str, argv: list[str]) -> int:
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
    _db_option(parser)
    parser.add_argument("--json", action="store_true", help="print the work item as JSON")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    from receiver.itsm.embedded.operations import close_work_item

    checked = _checked_db(prog, _resolve_db(args.db))
    if isinstance(checked, int):
        return checked
    db = checked

    def act() -> None:
        item = close_work_item(db, args.number, action=action, note=args.note, by=args.by)
        if args.json:
            _print_json([item])
        else:
            sys.stdout.write(f"{item['number']} is {item['state']}.\n")

    return _act(prog, db, act)


# -- trace / replay / discard ----------------------------------------------------------------


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help=f"the receiver's SQLite file or postgresql:// URL (default: ${DB_ENV}, else {DEFAULT_DB})",
    )


def _act(prog: str, db: str, action: Callable[[], int | None]) -> int:
    """Run an operation, turning an :class:`~receiver.storage.sqlite.operations.OpsError` into its message and exit 1."""
    from receiver.storage import is_postgres
    from receiver.storage.sqlite.operations import OpsError

    if "://" in db and not is_postgres(db):
        sys.stderr.write(
            f"{prog}: {db.split('://', 1)[0]}:// databases are not supported by this command; "
            "use the receiver's ops endpoints (docs/operations.md)\n"
        )
        return 1
    try:
        status = action()
    except OpsError as error:
        sys.stderr.write(f"{prog}: {error}\n")
        return 1
    except sqlite3.OperationalError as error:
        sys.stderr.write(f"{prog}: the database {db!r} is busy or unwritable ({error}); try again\n")
        return 1
    return status or 0


def _trace(argv: list[str]) -> int:
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
    _db_option(parser)
    parser.add_argument("--json", action="store_true", help="print the trace as JSON (docs/design.md)")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    from receiver.storage.sqlite.operations import trace

    checked = _checked_db(prog, _resolve_db(args.db))
    if isinstance(checked, int):
        return checked
    db = checked

    def show() -> int:
        result = trace(db, args.alert_id, details=not args.json)
        if args.json:
            json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
            sys.stdout.write("\n")
        else:
            _print_trace(result)
        return 0 if result["deliveries"] else 1

    return _act(prog, db, show)


def _print_trace(result: dict[str, Any]) -> None:
    out = sys.stdout
    out.write(f"Alert {result['alert_id']}\n")
    deliveries = result["deliveries"]
    if _heading("Deliveries", len(deliveries), out):
        headers = ["ID", "CONDITION", "RECEIVED", "STATE", "ATTEMPTS", "WORK ITEM", "LAST ERROR / NOTE"]
        rows = []
        for d in deliveries:
            note = d.get("last_error") or "-"
            if d["state"] == "discarded":
                note = f"discarded by {d.get('discarded_by')}: {d.get('discard_reason')}"
            rows.append(
                [
                    str(d["id"]),
                    d["condition"],
                    _short_time(d["received_at"]),
                    d["state"],
                    str(d["attempts"]),
                    d.get("work_item") or "-",
                    _clip(note, _TITLE_WIDTH),
                ]
            )
        _write_table(headers, rows, out)
        if any(d["state"] == "parked" for d in deliveries):
            out.write(
                "  parked: 'secure-export replay --id N' retries it, 'secure-export discard --id N --reason TEXT' gives it up\n"
            )
        if any(d["state"] == "pending" for d in deliveries):
            out.write("  pending: the dispatcher is still working on it (see the receiver's logs and /readyz)\n")
    else:
        out.write(
            "  the receiver never stored it: check the action group's delivery history and the receiver's 4xx logs\n"
        )
    items = result["work_items"]
    out.write("\n")
    if _heading("Became", len(items), out):
        for item in items:
            out.write(f"  {item['number']}" + (f"  {item['url']}" if item.get("url") else "") + "\n")


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
    _db_option(parser)
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


def _replay(argv: list[str]) -> int:
    prog = "secure-export replay"
    parser = _ids_parser(
        prog,
        "Move parked deliveries back to pending with a fresh attempt count; a running receiver "
        "dispatches them within SECURE_EXPORT_OPS_POLL_SECONDS (no restart). Backends are "
        "idempotent, so a replay never duplicates a work item. Exit 1 when an id was not parked.",
        allow_all=True,
    )
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    from receiver.storage.sqlite.operations import replay

    checked = _checked_db(prog, _resolve_db(args.db))
    if isinstance(checked, int):
        return checked
    db = checked
    return _act(
        prog, db, lambda: _report(prog, "Replayed", replay(db, None if args.all else args.ids, by=args.by), args.json)
    )


def _discard(argv: list[str]) -> int:
    prog = "secure-export discard"
    parser = _ids_parser(
        prog,
        "Give up on parked deliveries: they are marked discarded with who and why (never deleted "
        "silently; kept for SECURE_EXPORT_INBOX_DISCARDED_RETENTION_DAYS). Exit 1 when an id was not parked.",
        allow_all=False,
    )
    parser.add_argument("--reason", required=True, help="why the delivery is given up (kept on the row)")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    from receiver.storage.sqlite.operations import discard

    checked = _checked_db(prog, _resolve_db(args.db))
    if isinstance(checked, int):
        return checked
    db = checked
    return _act(
        prog, db, lambda: _report(prog, "Discarded", discard(db, args.ids, reason=args.reason, by=args.by), args.json)
    )


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
    from receiver.storage.readers import list_configuration_items

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
    from receiver.storage.sqlite.connection import DatabaseNotFoundError
    from receiver.storage import is_postgres

    if is_postgres(db):
        from receiver.storage.readers import read_postgres

        return read_postgres(prog, db, show)
    try:
        if not os.path.isfile(db):
            raise DatabaseNotFoundError(db)
        if not _is_ours(db):
            sys.stderr.write(
                f"{prog}: {db!r} is not a secure-export database (it has neither an inbox nor work items); "
                f"check --db or ${DB_ENV}\n"
            )
            return 1
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


def _is_ours(db: str) -> bool:
    """Whether the file has this product's tables (an empty file is SQLite's, and not ours)."""
    from pathlib import Path

    conn = sqlite3.connect(f"{Path(db).absolute().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    return bool(names & {"inbox", "work_items", "configuration_items"})


def _print_json(records: list[dict[str, Any]]) -> None:
    json.dump(records, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def print_work_items(items: Sequence[dict[str, Any]], out: TextIO | None = None) -> None:
    """Write work items as a readable table (what ``work-items`` prints without ``--json``)."""
    out = out or sys.stdout
    if not _heading("Work items", len(items), out):
        return
    headers = ["NUMBER", "STATE", "SEV", "PRI", "OCC", "GROUP", "OPENED", "RESOLVED", "TITLE", "CIS"]
    rows = [
        [
            item["number"],
            item["state"],
            item["severity"] or "-",
            str(item["priority"]),
            str(item["occurrences"]) + (f" (reopened {item['reopened']})" if item.get("reopened") else ""),
            _clip(item.get("assignment_group") or "-", _GROUP_WIDTH),
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
        out.write("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
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
