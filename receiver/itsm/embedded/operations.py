"""Operators closing the loop on embedded work items: resolve or close one by number, prune old ones.

``secure-export work-items resolve|close NUMBER --note TEXT`` and the ops endpoint
``POST /ops/work-items/{number}/{resolve|close}`` call :func:`close_work_item` on the database file,
beside a running receiver (SQLite's write lock keeps them apart). The note is added to the work
item with who acted. ``Resolved`` may still take occurrences of the same alert; ``Closed`` is final:
a later Fired of the same correlation key opens a new work item.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Literal

from receiver.itsm.embedded.store import _SCHEMA, _now, list_work_items, upgrade_schema
from receiver.storage.sqlite.operations import OpsError, operator
from receiver.storage.sqlite.write_lock import write_transaction

_LOCK_WAIT_SECONDS = 10.0


class WorkItemNotFound(OpsError):
    """No work item has that number."""


def _connect(db_path: str) -> sqlite3.Connection:
    from receiver.storage.sqlite.operations import NotOurDatabase, open_database

    try:
        conn = open_database(db_path, write=True)
    except NotOurDatabase:
        # A database with the backend's tables but no inbox (tests write work items alone).
        conn = sqlite3.connect(db_path, isolation_level=None, timeout=_LOCK_WAIT_SECONDS)
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'work_items'").fetchone():
            conn.close()
            raise
    upgrade_schema(conn)
    conn.executescript(_SCHEMA)
    return conn


def close_work_item(
    db_path: str, number: str, *, action: Literal["resolve", "close"] | str, note: str, by: str | None = None
) -> dict[str, Any]:
    """Resolve (``New`` → ``Resolved``) or close (``New``/``Resolved`` → ``Closed``) one work item.

    Returns the work item as ``work-items --json`` shows it. Raises :class:`WorkItemNotFound`, or
    :class:`OpsError` when the state does not allow it (closing twice, resolving a closed item).
    """
    if action not in ("resolve", "close"):
        raise OpsError(f"unknown action {action!r}; use resolve or close")
    note = " ".join(note.split())
    if not note:
        raise OpsError("a note is required (--note TEXT): say what was done")
    who = by or operator()
    number = number.strip().upper()
    text = f"{'Resolved' if action == 'resolve' else 'Closed'} by {who}: {note}"
    from receiver.storage import is_postgres

    if is_postgres(db_path):
        return _close_on_postgres(db_path, number, "resolve" if action == "resolve" else "close", text)
    conn = _connect(db_path)
    try:
        with write_transaction(conn, _LOCK_WAIT_SECONDS):
            row = conn.execute("SELECT id, state FROM work_items WHERE number = ?", (number,)).fetchone()
            if row is None:
                raise WorkItemNotFound(f"no work item {number}; 'secure-export work-items' lists them")
            item_id, state = row
            now = _now()
            if action == "resolve":
                if state != "New":
                    raise OpsError(f"{number} is {state}; only a New work item can be resolved")
                conn.execute("UPDATE work_items SET state = 'Resolved', resolved_at = ? WHERE id = ?", (now, item_id))
            else:
                if state == "Closed":
                    raise OpsError(f"{number} is already Closed")
                conn.execute(
                    "UPDATE work_items SET state = 'Closed', closed_at = ?, resolved_at = coalesce(resolved_at, ?) "
                    "WHERE id = ?",
                    (now, now, item_id),
                )
            conn.execute(
                "INSERT INTO work_item_notes (work_item_id, at, text) VALUES (?, ?, ?)", (item_id, now, text[:4000])
            )
    finally:
        conn.close()
    return next(item for item in list_work_items(db_path) if item["number"] == number)


def _close_on_postgres(url: str, number: str, action: Literal["resolve", "close"], text: str) -> dict[str, Any]:
    import asyncio

    from receiver.itsm.work_item_ops_pg import WorkItemNotFoundError
    from receiver.itsm.work_item_ops_pg import close_work_item as close_in_postgres
    from receiver.storage.readers import db_auth, list_work_items

    try:
        asyncio.run(close_in_postgres(url, number, action=action, text=text, auth=db_auth()))
    except WorkItemNotFoundError as error:
        raise WorkItemNotFound(str(error)) from None
    return next(item for item in list_work_items(url) if item["number"] == number)


def prune_resolved(conn: sqlite3.Connection, older_than_seconds: float, *, limit: int = 1000) -> int:
    """Delete up to ``limit`` Resolved/Closed work items (with their links and notes) past retention.

    Runs inside the caller's transaction. Their ``applied_events`` go too: a delivery of one of
    their alerts after that long is treated as new.
    """
    from receiver.storage.sqlite.inbox import _iso_at

    cutoff = _iso_at(time.time() - older_than_seconds)
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM work_items WHERE state IN ('Resolved', 'Closed') "
            "AND coalesce(closed_at, resolved_at) < ? ORDER BY id LIMIT ?",
            (cutoff, limit),
        )
    ]
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    for table, column in (
        ("applied_events", "work_item_id"),
        ("work_item_alerts", "work_item_id"),
        ("work_item_notes", "work_item_id"),
        ("work_item_cis", "work_item_id"),
        ("work_items", "id"),
    ):
        conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
    return len(ids)
