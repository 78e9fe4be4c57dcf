"""Operators' actions on an SQLite inbox: trace an alert, replay or discard parked deliveries.

They work beside a running receiver and bump ``ops_generation`` so it notices (docs/operations.md).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from receiver.storage.records import DatabaseMissing, NotOurDatabase, OpsResult, iso_at, operator
from receiver.storage.sqlite.connection import connect
from receiver.storage.sqlite.inbox import OPS_GENERATION_KEY, ensure_schema
from receiver.storage.sqlite.write_lock import write_transaction

_LOCK_WAIT_SECONDS = 10.0


def _now_iso() -> str:
    return iso_at(time.time())


def _product_tables(conn: sqlite3.Connection) -> set[str]:
    return {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('inbox', 'work_items')"
        )
    }


def open_database(db_path: str, *, write: bool) -> sqlite3.Connection:
    """Open an existing receiver database; raise :class:`DatabaseMissing` / :class:`NotOurDatabase`."""
    if not os.path.isfile(db_path):
        raise DatabaseMissing(
            f"no database at {db_path!r}. Point --db (or $SECURE_EXPORT_DB) at the receiver's SQLite file"
        )
    try:
        if write:
            conn = connect(db_path, busy_timeout=_LOCK_WAIT_SECONDS)
        else:
            conn = sqlite3.connect(
                f"{Path(db_path).absolute().as_uri()}?mode=ro",
                uri=True,
                timeout=_LOCK_WAIT_SECONDS,
                isolation_level=None,
            )
        tables = _product_tables(conn)
    except sqlite3.DatabaseError as error:
        raise NotOurDatabase(f"{db_path!r} is not a secure-export database: {error}") from None
    if "inbox" not in tables:
        conn.close()
        raise NotOurDatabase(
            f"{db_path!r} is an SQLite database but not secure-export's (it has no inbox table); "
            "check --db / $SECURE_EXPORT_DB"
        )
    if write:
        ensure_schema(conn)
    return conn


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


CONTRACT_DELIVERY_KEYS = ("id", "condition", "state", "attempts", "last_error", "received_at")
"""A delivery in ``trace --json`` (docs/design.md), exactly."""


def trace(db_path: str, alert_id: str, *, details: bool = False) -> dict[str, Any]:
    """Every delivery of ``alert_id`` and the work items / incidents they became (docs/design.md shape).

    ``work_items`` lists each number once, in the order first seen. With ``details`` each delivery
    also carries what the table shows an operator (``done_at``, ``parked_at``, ``work_item``,
    ``replays``, ``replayed_*``, ``discarded_*``, ``discard_reason``); without, exactly the
    contract's keys.
    """
    conn = open_database(db_path, write=False)
    try:
        current = _has_column(conn, "inbox", "work_item")
        extra = (
            ", work_item, work_item_url, replays, replayed_at, replayed_by, discarded_at, discarded_by, discard_reason"
            if current
            else ""
        )
        rows = conn.execute(
            "SELECT id, monitor_condition, state, attempts, last_error, received_at, done_at, parked_at"
            f"{extra} FROM inbox WHERE alert_id = ? ORDER BY id",
            (alert_id,),
        ).fetchall()
        embedded = _embedded_items(conn, alert_id)
    finally:
        conn.close()
    deliveries: list[dict[str, Any]] = []
    items: dict[str, str | None] = {}
    for row in rows:
        delivery: dict[str, Any] = {
            "id": row[0],
            "condition": row[1],
            "state": row[2],
            "attempts": row[3],
            "last_error": row[4],
            "received_at": row[5],
            "done_at": row[6],
            "parked_at": row[7],
        }
        if current:
            keys = (
                "work_item",
                "work_item_url",
                "replays",
                "replayed_at",
                "replayed_by",
                "discarded_at",
                "discarded_by",
                "discard_reason",
            )
            delivery.update(zip(keys, row[8:], strict=True))
            if row[8]:
                items.setdefault(row[8], row[9])
        deliveries.append(delivery if details else {key: delivery[key] for key in CONTRACT_DELIVERY_KEYS})
    for number in embedded:
        items.setdefault(number, None)
    return {
        "alert_id": alert_id,
        "deliveries": deliveries,
        "work_items": [{"number": number, "url": url} for number, url in items.items()],
    }


def _embedded_items(conn: sqlite3.Connection, alert_id: str) -> list[str]:
    """Numbers of the embedded backend's work items this alert belongs to (older rows record none)."""
    names = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('work_items', 'work_item_alerts')"
        )
    }
    if names != {"work_items", "work_item_alerts"}:
        return []
    return [
        str(row[0])
        for row in conn.execute(
            "SELECT w.number FROM work_item_alerts a JOIN work_items w ON w.id = a.work_item_id "
            "WHERE a.alert_id = ? ORDER BY w.id",
            (alert_id,),
        )
        if row[0]
    ]


def _states(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found.update(
            conn.execute(
                f"SELECT id, state FROM inbox WHERE id IN ({','.join('?' * len(chunk))})", list(chunk)
            ).fetchall()
        )
    return found


def _bump(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO inbox_meta (key, value) VALUES (?, '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        (OPS_GENERATION_KEY,),
    )


def _change(db_path: str, ids: Iterable[int] | None, statement: str, params: Sequence[Any]) -> OpsResult:
    """Run ``statement`` (an UPDATE of parked rows by ``id = ?``) for each id, in one transaction."""
    conn = open_database(db_path, write=True)
    try:
        with write_transaction(conn, _LOCK_WAIT_SECONDS):
            if ids is None:
                targets = [row[0] for row in conn.execute("SELECT id FROM inbox WHERE state = 'parked' ORDER BY id")]
                skipped: dict[int, str] = {}
            else:
                wanted = list(dict.fromkeys(ids))
                states = _states(conn, wanted)
                skipped = {
                    row_id: ("no such delivery" if row_id not in states else f"it is {states[row_id]}, not parked")
                    for row_id in wanted
                    if states.get(row_id) != "parked"
                }
                targets = [row_id for row_id in wanted if row_id not in skipped]
            conn.executemany(statement, [(*params, row_id) for row_id in targets])
            if targets:
                _bump(conn)
    finally:
        conn.close()
    return OpsResult(targets, skipped)


def replay(db_path: str, ids: Iterable[int] | None, *, by: str | None = None) -> OpsResult:
    """Parked rows (``ids``, or all with ``None``) back to pending with a fresh attempt count.

    The last error stays on the row until the next attempt replaces it; who replayed and when is
    recorded. A running receiver picks the rows up within ``SECURE_EXPORT_OPS_POLL_SECONDS``.
    """
    return _change(
        db_path,
        ids,
        "UPDATE inbox SET state = 'pending', attempts = 0, next_attempt_at = NULL, parked_at = NULL, "
        "replays = replays + 1, replayed_at = ?, replayed_by = ? WHERE id = ? AND state = 'parked'",
        (_now_iso(), by or operator()),
    )


def discard(db_path: str, ids: Iterable[int], *, reason: str, by: str | None = None) -> OpsResult:
    """Parked rows marked ``discarded`` with who and why; they are kept until retention removes them."""
    return _change(
        db_path,
        ids,
        "UPDATE inbox SET state = 'discarded', discarded_at = ?, discarded_by = ?, discard_reason = ? "
        "WHERE id = ? AND state = 'parked'",
        (_now_iso(), by or operator(), reason),
    )


def ops_generation(conn: sqlite3.Connection) -> int:
    """The current ``ops_generation`` (0 before any operator action)."""
    row = conn.execute("SELECT value FROM inbox_meta WHERE key = ?", (OPS_GENERATION_KEY,)).fetchone()
    return int(row[0]) if row else 0
