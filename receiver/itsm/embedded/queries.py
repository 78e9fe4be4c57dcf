"""Listing the embedded backend's work items and CIs (``work-items``, ``cmdb``), from either store.

Each store reads its rows in one snapshot; :func:`shape_work_items` turns them into the documented
fields (docs/design.md), the same for both. On PostgreSQL the authentication follows
``SECURE_EXPORT_DB_AUTH`` like the receiver's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from receiver.itsm.embedded.priority import ROUTED_FIELDS
from receiver.storage import is_postgres
from receiver.storage.postgres.connect import Database, DbAuth
from receiver.storage.readers import db_auth
from receiver.storage.sqlite.connection import connect_for_reading, has_tables

__all__ = [
    "list_configuration_items",
    "list_postgres_configuration_items",
    "list_postgres_work_items",
    "list_work_items",
    "shape_work_items",
]

ITEMS_SQL = "SELECT * FROM work_items ORDER BY id"
NOTES_SQL = "SELECT work_item_id, at || ' ' || text FROM work_item_notes ORDER BY id"
CIS_SQL = (
    "SELECT l.work_item_id, c.name FROM work_item_cis l JOIN configuration_items c ON c.id = l.ci_id ORDER BY c.id"
)
CONFIGURATION_ITEMS_SQL = (
    "SELECT id, name, azure_resource_id, first_seen, last_seen FROM configuration_items ORDER BY id"
)


def _alerts_sql(arrival: str) -> str:
    """Alert ids by item, in firing order; ``arrival`` (the store's insertion order column) breaks ties."""
    return f"SELECT work_item_id, alert_id FROM work_item_alerts ORDER BY fired_at, {arrival}"


def _grouped(pairs: Iterable[Sequence[Any]]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(int(key), []).append(value)
    return grouped


def shape_work_items(
    items: Iterable[Mapping[str, Any]],
    alerts: Iterable[Sequence[Any]],
    notes: Iterable[Sequence[Any]],
    cis: Iterable[Sequence[Any]],
) -> list[dict[str, Any]]:
    """Work items with the fields of docs/design.md, from a store's rows.

    ``items`` are ``work_items`` rows; ``alerts``, ``notes`` and ``cis`` are ``(work_item_id,
    value)`` pairs in the order they are listed. A database of an earlier version, not yet opened
    by a receiver, lacks the routed columns and ``reopened``: they show as ``None`` and ``0``.
    """
    alert_ids, note_texts, ci_names = _grouped(alerts), _grouped(notes), _grouped(cis)
    return [
        {
            "id": row["id"],
            "number": row["number"],
            "correlation_key": row["correlation_key"],
            "alert_ids": alert_ids.get(row["id"], []),
            "state": row["state"],
            "severity": row["severity"],
            "priority": row["priority"],
            "title": row["title"],
            "description": row["description"],
            "configuration_items": ci_names.get(row["id"], []),
            "opened_at": row["opened_at"],
            "resolved_at": row["resolved_at"],
            "occurrences": row["occurrences"],
            "notes": note_texts.get(row["id"], []),
            **{name: row.get(name) for name in ROUTED_FIELDS},
            "reopened": row.get("reopened", 0),
        }
        for row in items
    ]


def list_work_items(db: str) -> list[dict[str, Any]]:
    """Every work item, oldest first: ``db`` is the SQLite file or the ``postgresql://`` URL.

    Raises :class:`~receiver.storage.sqlite.connection.DatabaseNotFoundError` when the file does
    not exist; a database the backend never wrote to (only the inbox) has no work items.
    """
    if is_postgres(db):
        return asyncio.run(list_postgres_work_items(db, auth=db_auth()))
    return _sqlite_work_items(db)


def list_configuration_items(db: str) -> list[dict[str, Any]]:
    """Every CI, in order of first binding: ``db`` is the SQLite file or the ``postgresql://`` URL.

    Raises :class:`~receiver.storage.sqlite.connection.DatabaseNotFoundError` when the file does not exist.
    """
    if is_postgres(db):
        return asyncio.run(list_postgres_configuration_items(db, auth=db_auth()))
    return _sqlite_configuration_items(db)


# -- SQLite --------------------------------------------------------------------------------------


def _sqlite_work_items(db_path: str) -> list[dict[str, Any]]:
    conn = connect_for_reading(db_path)
    try:
        if not has_tables(conn, "work_items", "work_item_alerts", "work_item_notes", "work_item_cis"):
            return []
        conn.execute("BEGIN")  # one consistent snapshot across the four tables
        items = [dict(row) for row in conn.execute(ITEMS_SQL)]
        alerts = conn.execute(_alerts_sql("rowid")).fetchall()
        notes = conn.execute(NOTES_SQL).fetchall()
        cis = conn.execute(CIS_SQL).fetchall()
        conn.execute("COMMIT")
    finally:
        conn.close()
    return shape_work_items(items, alerts, notes, cis)


def _sqlite_configuration_items(db_path: str) -> list[dict[str, Any]]:
    conn = connect_for_reading(db_path)
    try:
        if not has_tables(conn, "configuration_items"):
            return []
        rows = conn.execute(CONFIGURATION_ITEMS_SQL).fetchall()
    finally:
        conn.close()
    return [dict(row) for row in rows]


# -- PostgreSQL ----------------------------------------------------------------------------------


async def list_postgres_work_items(url: str, *, auth: DbAuth | str = "password") -> list[dict[str, Any]]:
    """Every work item in the PostgreSQL database, oldest first, from one consistent snapshot."""
    conn = await Database(url, auth=auth).connect()
    try:
        if await conn.fetchval("SELECT to_regclass('work_items') IS NULL"):
            return []
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            items = [dict(row) for row in await conn.fetch(ITEMS_SQL)]
            alerts = await conn.fetch(_alerts_sql("seq"))
            notes = await conn.fetch(NOTES_SQL)
            cis = await conn.fetch(CIS_SQL)
    finally:
        await conn.close()
    return shape_work_items(items, alerts, notes, cis)


async def list_postgres_configuration_items(url: str, *, auth: DbAuth | str = "password") -> list[dict[str, Any]]:
    """Every CI in the PostgreSQL database, in order of first binding."""
    conn = await Database(url, auth=auth).connect()
    try:
        if await conn.fetchval("SELECT to_regclass('configuration_items') IS NULL"):
            return []
        rows = await conn.fetch(CONFIGURATION_ITEMS_SQL)
    finally:
        await conn.close()
    return [dict(row) for row in rows]
