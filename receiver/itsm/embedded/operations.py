"""Operators ending embedded work items: resolve or close one by number, on either store; pruning old ones.

``secure-export work-items resolve|close NUMBER --note TEXT`` and ``POST /ops/work-items/{number}/{action}``
call :func:`close_work_item` beside a running receiver; docs/work-items.md describes the states.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any, Literal

from receiver.itsm.embedded import render, schema
from receiver.itsm.embedded.clock import iso_ago, now
from receiver.itsm.embedded.queries import list_work_items
from receiver.storage import is_postgres
from receiver.storage.postgres.connect import Database, DbAuth
from receiver.storage.postgres.operations import database_errors, database_problem
from receiver.storage.readers import db_auth
from receiver.storage.records import NotOurDatabase, OpsError, operator
from receiver.storage.sqlite.connection import connect
from receiver.storage.sqlite.operations import open_database
from receiver.storage.sqlite.write_lock import write_transaction

__all__ = [
    "Action",
    "WorkItemNotFoundError",
    "close_in_postgres",
    "close_work_item",
    "prune_resolved",
    "prune_resolved_postgres",
]

Action = Literal["resolve", "close"]

_LOCK_WAIT_SECONDS = 10.0

_PRUNE_SQLITE_TABLES = (
    ("applied_events", "work_item_id"),
    ("work_item_alerts", "work_item_id"),
    ("work_item_notes", "work_item_id"),
    ("work_item_cis", "work_item_id"),
    ("work_items", "id"),
)
"""What goes with a pruned work item on SQLite, children first (PostgreSQL's foreign keys cascade)."""


class WorkItemNotFoundError(OpsError):
    """No work item has that number."""


def close_work_item(db: str, number: str, *, action: Action | str, note: str, by: str | None = None) -> dict[str, Any]:
    """Resolve (``New`` → ``Resolved``) or close (``New``/``Resolved`` → ``Closed``) one work item.

    ``db`` is the SQLite file or the ``postgresql://`` URL. Returns the work item as
    ``work-items --json`` shows it. Raises :class:`WorkItemNotFoundError`, or :class:`OpsError`
    when the state does not allow it (closing twice, resolving a closed item).
    """
    if action not in ("resolve", "close"):
        raise OpsError(f"unknown action {action!r}; use resolve or close")
    checked: Action = "resolve" if action == "resolve" else "close"
    note = " ".join(note.split())
    if not note:
        raise OpsError("a note is required (--note TEXT): say what was done")
    number = number.strip().upper()
    text = render.operator_note(checked, by or operator(), note)
    if is_postgres(db):
        try:
            asyncio.run(close_in_postgres(db, number, action=checked, text=text, auth=db_auth()))
        except database_errors() as error:
            raise database_problem(db, error) from None
    else:
        _close_in_sqlite(db, number, checked, text)
    return next(item for item in list_work_items(db) if item["number"] == number)


def _not_found(number: str) -> WorkItemNotFoundError:
    return WorkItemNotFoundError(f"no work item {number}; 'secure-export work-items' lists them")


def _check_transition(number: str, state: str, action: Action) -> None:
    """Raise :class:`OpsError` when a work item in ``state`` cannot take ``action``."""
    if action == "resolve" and state != "New":
        raise OpsError(f"{number} is {state}; only a New work item can be resolved")
    if action == "close" and state == "Closed":
        raise OpsError(f"{number} is already Closed")


def _connect(db_path: str) -> sqlite3.Connection:
    try:
        conn = open_database(db_path, write=True)
    except NotOurDatabase:
        # A database with the backend's tables but no inbox (tests write work items alone).
        conn = connect(db_path, busy_timeout=_LOCK_WAIT_SECONDS)
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'work_items'").fetchone():
            conn.close()
            raise
    schema.upgrade_schema(conn)
    schema.create_tables(conn)
    return conn


def _close_in_sqlite(db_path: str, number: str, action: Action, text: str) -> None:
    conn = _connect(db_path)
    try:
        with write_transaction(conn, _LOCK_WAIT_SECONDS):
            row = conn.execute("SELECT id, state FROM work_items WHERE number = ?", (number,)).fetchone()
            if row is None:
                raise _not_found(number)
            item_id, state = row
            _check_transition(number, state, action)
            at = now()
            if action == "resolve":
                conn.execute("UPDATE work_items SET state = 'Resolved', resolved_at = ? WHERE id = ?", (at, item_id))
            else:
                conn.execute(
                    "UPDATE work_items SET state = 'Closed', closed_at = ?, resolved_at = coalesce(resolved_at, ?) "
                    "WHERE id = ?",
                    (at, at, item_id),
                )
            conn.execute("INSERT INTO work_item_notes (work_item_id, at, text) VALUES (?, ?, ?)", (item_id, at, text))
    finally:
        conn.close()


async def close_in_postgres(
    url: str, number: str, *, action: Action, text: str, auth: DbAuth | str = "password"
) -> None:
    """:func:`close_work_item` on PostgreSQL, under the apply path's lock of the item's correlation key.

    A replica applying an alert of the same key waits for it, and then sees a ``Closed`` item as ended.
    """
    conn = await Database(url, auth=auth).connect()
    try:
        async with conn.transaction():
            found = await conn.fetchrow("SELECT id, correlation_key FROM work_items WHERE number = $1", number)
            if found is None:
                raise _not_found(number)
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", found["correlation_key"])
            state = await conn.fetchval("SELECT state FROM work_items WHERE id = $1 FOR UPDATE", found["id"])
            _check_transition(number, state, action)
            at = now()
            if action == "resolve":
                await conn.execute(
                    "UPDATE work_items SET state = 'Resolved', resolved_at = $1 WHERE id = $2", at, found["id"]
                )
            else:
                await conn.execute(
                    "UPDATE work_items SET state = 'Closed', closed_at = $1, resolved_at = coalesce(resolved_at, $1)"
                    " WHERE id = $2",
                    at,
                    found["id"],
                )
            await conn.execute(
                "INSERT INTO work_item_notes (work_item_id, at, text) VALUES ($1, $2, $3)", found["id"], at, text
            )
    finally:
        await conn.close()


def prune_resolved(conn: sqlite3.Connection, older_than_seconds: float, *, limit: int = 1000) -> int:
    """Delete up to ``limit`` Resolved/Closed work items (with their links and notes) past retention.

    Runs inside the caller's transaction. Their ``applied_events`` go too: a delivery of one of
    their alerts after that long is treated as new.
    """
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM work_items WHERE state IN ('Resolved', 'Closed') "
            "AND coalesce(closed_at, resolved_at) < ? ORDER BY id LIMIT ?",
            (iso_ago(older_than_seconds), limit),
        )
    ]
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    for table, column in _PRUNE_SQLITE_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
    return len(ids)


async def prune_resolved_postgres(conn: Any, older_than_seconds: float, *, limit: int = 1000) -> int:
    """Delete up to ``limit`` Resolved/Closed work items resolved longer ago than that, on PostgreSQL.

    ``conn`` is an asyncpg connection; links and notes go with the item (foreign keys cascade).
    """
    status: str = await conn.execute(
        "DELETE FROM work_items WHERE id IN (SELECT id FROM work_items WHERE state IN ('Resolved', 'Closed') "
        "AND resolved_at IS NOT NULL AND resolved_at < $1 ORDER BY id LIMIT $2)",
        iso_ago(older_than_seconds),
        limit,
    )
    return int(status.rsplit(" ", 1)[-1])
