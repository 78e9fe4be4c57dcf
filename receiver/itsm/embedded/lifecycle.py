"""The embedded backend's lifecycle rules on SQLite: reopen window, flap damping, whole-item resolutions.

The decisions are :mod:`receiver.itsm.embedded.lifecycle_rules`'s; these are their statements. They
run on the writer thread's connection, inside the transaction of the event that applies them;
docs/work-items.md describes them for operators.
"""

from __future__ import annotations

import sqlite3

from receiver.alerts.events import AlertEvent
from receiver.itsm.embedded import lifecycle_rules as rules
from receiver.itsm.embedded import render


def previous_item(conn: sqlite3.Connection, event: AlertEvent) -> sqlite3.Row | None:
    """The latest item of the same rule and targets, if any."""
    if not event.lifecycle_key:
        return None
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {rules.PREVIOUS_ITEM_COLUMNS} FROM work_items WHERE lifecycle_key = ? ORDER BY id DESC LIMIT 1",
        (event.lifecycle_key,),
    ).fetchone()
    return row


def others_open(conn: sqlite3.Connection, previous: sqlite3.Row) -> bool:
    """Whether another item of the same rule and targets is still open."""
    row = conn.execute(
        "SELECT 1 FROM work_items WHERE lifecycle_key = (SELECT lifecycle_key FROM work_items WHERE id = ?)"
        " AND state = 'New' AND id != ? LIMIT 1",
        (previous["id"], previous["id"]),
    ).fetchone()
    return row is not None


def reopen_gap(conn: sqlite3.Connection, previous: sqlite3.Row | None, fired_at: str, window: float) -> float | None:
    """Seconds since ``previous`` was resolved when a Fired at ``fired_at`` reopens it, else ``None``."""
    gap = rules.reopen_gap(previous, fired_at, window)
    if gap is None or previous is None or others_open(conn, previous):
        return None  # other instances of the rule still fire (one per dimension): this is one more, not a re-fire
    return gap


def reopen(
    conn: sqlite3.Connection, previous: sqlite3.Row, event: AlertEvent, fired_at: str, gap: float, window: float
) -> str:
    """Bring ``previous`` back to ``New`` for ``event``; returns the note."""
    conn.execute(
        "UPDATE work_items SET state = 'New', resolved_at = NULL, resolved_by = NULL, reopened = reopened + 1,"
        " occurrences = occurrences + 1, correlation_key = ? WHERE id = ?",
        (event.correlation_key, previous["id"]),
    )
    conn.execute(
        "INSERT INTO work_item_alerts (work_item_id, alert_id, fired_at, resolved_at) VALUES (?, ?, ?, NULL)",
        (previous["id"], event.alert_id, fired_at),
    )
    return render.reopened_note(event, fired_at, gap, window)


def held_open(conn: sqlite3.Connection, previous: sqlite3.Row | None) -> bool:
    """Whether ``previous`` is open only because flap damping held it (no alert of it still firing)."""
    if previous is None or previous["state"] != "New":
        return False
    firing = conn.execute(
        "SELECT COUNT(*) FROM work_item_alerts WHERE work_item_id = ? AND resolved_at IS NULL", (previous["id"],)
    ).fetchone()[0]
    return rules.held_open(previous, int(firing))


def join_held(conn: sqlite3.Connection, previous: sqlite3.Row, event: AlertEvent, fired_at: str) -> None:
    """Add ``event``'s alert to the held item; the item now answers to this event's correlation key."""
    conn.execute(
        "UPDATE work_items SET occurrences = occurrences + 1, correlation_key = ? WHERE id = ?",
        (event.correlation_key, previous["id"]),
    )
    conn.execute(
        "INSERT INTO work_item_alerts (work_item_id, alert_id, fired_at, resolved_at) VALUES (?, ?, ?, NULL)",
        (previous["id"], event.alert_id, fired_at),
    )


def open_item_for(conn: sqlite3.Connection, column: rules.KeyColumn, key: str) -> int | None:
    """The open item whose ``correlation_key`` or ``lifecycle_key`` is ``key``."""
    assert column in ("correlation_key", "lifecycle_key")
    row = conn.execute(
        f"SELECT id FROM work_items WHERE {column} = ? AND state = 'New' ORDER BY id DESC LIMIT 1", (key,)
    ).fetchone()
    return int(row[0]) if row is not None else None


def resolve_whole_item(conn: sqlite3.Connection, item_id: int, resolved_at: str, by: str) -> None:
    """Resolve the item and every alert instance still firing on it."""
    conn.execute(
        "UPDATE work_item_alerts SET resolved_at = ? WHERE work_item_id = ? AND resolved_at IS NULL",
        (resolved_at, item_id),
    )
    conn.execute(
        "UPDATE work_items SET state = 'Resolved', resolved_at = ?, resolved_by = ? WHERE id = ?",
        (resolved_at, by, item_id),
    )
