"""The embedded backend's routed fields and lifecycle rules, on the connection of its worker thread.

* **Routed fields** (``assignment_group``, ``category``, ``subcategory``, ``impact``, ``urgency``)
  come from ``event.route``; a route's impact and urgency set the priority through ServiceNow's
  default priority matrix, otherwise the severity → priority map does.
* **Reopen window**: a Fired whose rule and targets (``lifecycle_key``) had an item Azure resolved
  within the window reopens it (``New``, ``reopened`` + 1, a note). A ``Closed`` item is never
  reopened: the new item names it.
* **Resolutions the receiver makes** (stateless TTL, quiet after flapping) and **recoveries**
  (resource health ``Available``) resolve every alert still firing on the item, with a note.
* **Held Resolved** (flapping): the alert instance is marked resolved, the item stays open.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from receiver.alerts.events import AlertEvent
from secure_export.durations import format_duration

ROUTED_COLUMNS = {
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

PRIORITY_MATRIX: Mapping[tuple[int, int], int] = {
    (1, 1): 1,
    (1, 2): 2,
    (2, 1): 2,
    (1, 3): 3,
    (2, 2): 3,
    (3, 1): 3,
    (2, 3): 4,
    (3, 2): 4,
    (3, 3): 5,
}
"""ServiceNow's default priority lookup: (impact, urgency) → priority."""

SEVERITY_LEVELS: Mapping[str, tuple[int, int]] = {
    "Sev0": (1, 1),
    "Sev1": (1, 2),
    "Sev2": (2, 2),
    "Sev3": (2, 3),
    "Sev4": (3, 3),
}
"""Impact and urgency of a severity, completing a route that sets only one of the two."""


def ensure_columns(conn: sqlite3.Connection) -> None:
    """Add the routed and lifecycle columns (and their index) to a ``work_items`` of an earlier version."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(work_items)")}
    for name, kind in ROUTED_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE work_items ADD COLUMN {name} {kind}")
    conn.execute("CREATE INDEX IF NOT EXISTS work_items_lifecycle ON work_items (lifecycle_key, id)")


def routed_values(event: AlertEvent) -> dict[str, Any]:
    """The routed columns of a new item (``None`` where no route sets them)."""
    route = event.route
    if route is None:
        return {"assignment_group": None, "category": None, "subcategory": None, "impact": None, "urgency": None}
    return {
        "assignment_group": route.assignment_group,
        "category": route.category,
        "subcategory": route.subcategory,
        "impact": route.impact,
        "urgency": route.urgency,
    }


def routed_priority(event: AlertEvent, by_severity: int) -> int:
    """A route's impact/urgency through the priority matrix; else the severity map's priority."""
    route = event.route
    if route is None or (route.impact is None and route.urgency is None):
        return by_severity
    impact, urgency = SEVERITY_LEVELS.get(event.severity or "", (2, 2))
    return PRIORITY_MATRIX[(route.impact or impact, route.urgency or urgency)]


def _seconds_between(earlier: str, later: str) -> float:
    return (
        datetime.fromisoformat(later.replace("Z", "+00:00")) - datetime.fromisoformat(earlier.replace("Z", "+00:00"))
    ).total_seconds()


def previous_item(conn: sqlite3.Connection, event: AlertEvent) -> sqlite3.Row | None:
    """The latest item of the same rule and targets, if any."""
    if not event.lifecycle_key:
        return None
    row: sqlite3.Row | None = conn.execute(
        "SELECT id, number, state, resolved_at, resolved_by FROM work_items WHERE lifecycle_key = ?"
        " ORDER BY id DESC LIMIT 1",
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


def reopenable(conn: sqlite3.Connection, previous: sqlite3.Row | None, fired_at: str, window: float) -> bool:
    """Whether ``previous`` is Resolved (by Azure, the receiver or a person; not Closed) within ``window``
    seconds before ``fired_at``: as ServiceNow lets a Resolved incident be reopened and a Closed one not."""
    if previous is None or previous["state"] != "Resolved" or window <= 0 or not previous["resolved_at"]:
        return False
    if others_open(conn, previous):
        return False  # other instances of the rule still fire (one per dimension): this is one more, not a re-fire
    try:
        gap = _seconds_between(previous["resolved_at"], fired_at)
    except ValueError:
        return False
    return gap <= window


def reopen(conn: sqlite3.Connection, previous: sqlite3.Row, event: AlertEvent, fired_at: str, window: float) -> str:
    """Bring ``previous`` back to ``New`` for ``event``; returns the note."""
    gap = max(0.0, _seconds_between(previous["resolved_at"], fired_at))
    conn.execute(
        "UPDATE work_items SET state = 'New', resolved_at = NULL, resolved_by = NULL, reopened = reopened + 1,"
        " occurrences = occurrences + 1, correlation_key = ? WHERE id = ?",
        (event.correlation_key, previous["id"]),
    )
    conn.execute(
        "INSERT INTO work_item_alerts (work_item_id, alert_id, fired_at, resolved_at) VALUES (?, ?, ?, NULL)",
        (previous["id"], event.alert_id, fired_at),
    )
    return (
        f"Reopened: alert {event.alert_id} fired at {fired_at}, {format_duration(gap)} after Azure resolved this "
        f"item (reopen window {format_duration(window)}, SECURE_EXPORT_REOPEN_WINDOW)."
    )


def held_open(conn: sqlite3.Connection, previous: sqlite3.Row | None) -> bool:
    """Whether ``previous`` is open only because flap damping held it (no alert of it still firing)."""
    if previous is None or previous["state"] != "New":
        return False
    firing = conn.execute(
        "SELECT COUNT(*) FROM work_item_alerts WHERE work_item_id = ? AND resolved_at IS NULL", (previous["id"],)
    ).fetchone()[0]
    return int(firing) == 0


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


def not_reopened_note(previous: sqlite3.Row | None) -> str | None:
    """For a new item: why the previous item of the same rule and targets was not reopened, if a person ended it."""
    if previous is None:
        return None
    if previous["state"] == "Closed":
        return f"Follows {previous['number']}, which a person closed; closed items are never reopened."
    return None


def open_item_for(conn: sqlite3.Connection, column: str, key: str) -> int | None:
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


def recovery_note(event: AlertEvent) -> str:
    """The note of an item resolved by a resource health recovery."""
    where = ", ".join(event.configuration_items) or ", ".join(event.target_ids) or "the resource"
    return f"Resolved: resource health reports {where} Available again (alert {event.alert_id})."
