"""The embedded backend's SQLite tables, and the upgrades of a file an earlier version wrote.

PostgreSQL's copy of these tables is a migration of :mod:`receiver.storage.postgres.schema`.
"""

from __future__ import annotations

import logging
import sqlite3

from receiver.storage.sqlite.write_lock import write_transaction

__all__ = ["LATER_COLUMNS", "SCHEMA", "create_tables", "ensure_columns", "upgrade_schema", "work_item_number"]

_log = logging.getLogger(__name__)

_UPGRADE_LOCK_WAIT_SECONDS = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS work_items (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    number          TEXT UNIQUE,
    correlation_key TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('New', 'Resolved', 'Closed')),
    severity        TEXT,
    priority        INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 5),
    title           TEXT NOT NULL,
    description     TEXT NOT NULL,
    opened_at       TEXT NOT NULL,
    resolved_at     TEXT,
    occurrences     INTEGER NOT NULL DEFAULT 1,
    closed_at       TEXT,
    assignment_group TEXT,
    category        TEXT,
    subcategory     TEXT,
    impact          INTEGER,
    urgency         INTEGER,
    reopened        INTEGER NOT NULL DEFAULT 0,
    lifecycle_key   TEXT,
    resolved_by     TEXT
);
-- At most one open work item per correlation key: the invariant behind "no duplicate".
CREATE UNIQUE INDEX IF NOT EXISTS work_items_one_open_per_key
    ON work_items (correlation_key) WHERE state = 'New';
CREATE TABLE IF NOT EXISTS work_item_alerts (
    work_item_id INTEGER NOT NULL REFERENCES work_items (id),
    alert_id     TEXT NOT NULL UNIQUE,
    fired_at     TEXT NOT NULL,
    resolved_at  TEXT,
    PRIMARY KEY (work_item_id, alert_id)
);
CREATE TABLE IF NOT EXISTS work_item_notes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    work_item_id INTEGER NOT NULL REFERENCES work_items (id),
    at           TEXT NOT NULL,
    text         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS configuration_items (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT NOT NULL,
    name_key          TEXT NOT NULL UNIQUE,
    azure_resource_id TEXT,
    first_seen        TEXT NOT NULL,
    last_seen         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS work_item_cis (
    work_item_id INTEGER NOT NULL REFERENCES work_items (id),
    ci_id        INTEGER NOT NULL REFERENCES configuration_items (id),
    PRIMARY KEY (work_item_id, ci_id)
);
CREATE TABLE IF NOT EXISTS applied_events (
    alert_id     TEXT NOT NULL,
    condition    TEXT NOT NULL,
    work_item_id INTEGER,
    event_at     TEXT NOT NULL,
    applied_at   TEXT NOT NULL,
    PRIMARY KEY (alert_id, condition)
);
"""

_FIRST_COLUMNS = (
    "id, number, correlation_key, state, severity, priority, title, description, opened_at, resolved_at, occurrences"
)
"""The columns of the first ``work_items`` schema, copied over when an older database is upgraded."""

LATER_COLUMNS = {
    "assignment_group": "TEXT",
    "category": "TEXT",
    "subcategory": "TEXT",
    "impact": "INTEGER",
    "urgency": "INTEGER",
    "reopened": "INTEGER NOT NULL DEFAULT 0",
    "lifecycle_key": "TEXT",
    "resolved_by": "TEXT",
}
"""Columns added to ``work_items`` by routing and the lifecycle (added to older databases at start)."""


def work_item_number(item_id: int) -> str:
    """The number a work item shows (``INC0000001``); the same rule as the ``printf`` that stores it."""
    return f"INC{item_id:07d}"


def upgrade_schema(conn: sqlite3.Connection) -> None:
    """Rebuild a ``work_items`` table of an earlier version (its ``CHECK`` did not allow ``Closed``).

    SQLite cannot alter a constraint; the table is copied into the current shape in one
    transaction (SQLite's documented procedure: new table, copy, drop, rename). Foreign keys must
    not be enforced on ``conn`` meanwhile.
    """
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'work_items'").fetchone()
    if row is None or "'Closed'" in row[0]:
        return
    with write_transaction(conn, _UPGRADE_LOCK_WAIT_SECONDS):
        again = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'work_items'").fetchone()
        if "'Closed'" not in again[0]:
            create = SCHEMA.split(";", 1)[0].replace("IF NOT EXISTS work_items", "work_items_new")
            conn.execute(create)
            conn.execute(f"INSERT INTO work_items_new ({_FIRST_COLUMNS}) SELECT {_FIRST_COLUMNS} FROM work_items")
            conn.execute("DROP TABLE work_items")
            conn.execute("ALTER TABLE work_items_new RENAME TO work_items")
            _log.info("work_items table upgraded", extra={"event": "work_items_upgraded"})


def create_tables(conn: sqlite3.Connection) -> None:
    """Create the tables that are missing (after :func:`upgrade_schema`)."""
    conn.executescript(SCHEMA)


def ensure_columns(conn: sqlite3.Connection) -> None:
    """Add the routed and lifecycle columns (and their index) to a ``work_items`` of an earlier version."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(work_items)")}
    for name, kind in LATER_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE work_items ADD COLUMN {name} {kind}")
    conn.execute("CREATE INDEX IF NOT EXISTS work_items_lifecycle ON work_items (lifecycle_key, id)")
