"""The embedded backend's lifecycle rules on PostgreSQL: the statements behind :mod:`.lifecycle_rules`.

They run inside the transaction of the event that applies them, which holds the advisory locks
of the event's correlation key and of its rule and targets (``lifecycle_key``), so replicas that
apply alerts of one rule and targets take turns; docs/postgresql.md, "Lifecycle rules".
"""

from __future__ import annotations

from typing import Any

from receiver.alerts.events import AlertEvent
from receiver.itsm.embedded import lifecycle_rules as rules
from receiver.itsm.embedded import render
from receiver.itsm.embedded.lifecycle_rules import KeyColumn

__all__ = ["held_open", "join_held", "open_item_for", "previous_item", "reopen", "reopen_gap", "resolve_whole_item"]

_ADD_ALERT = "INSERT INTO work_item_alerts (work_item_id, alert_id, fired_at, resolved_at) VALUES ($1, $2, $3, NULL)"


async def previous_item(conn: Any, event: AlertEvent) -> Any | None:
    """The latest item of the same rule and targets, if any (locked for this transaction)."""
    if not event.lifecycle_key:
        return None
    return await conn.fetchrow(
        f"SELECT {rules.PREVIOUS_ITEM_COLUMNS} FROM work_items WHERE lifecycle_key = $1"
        " ORDER BY id DESC LIMIT 1 FOR UPDATE",
        event.lifecycle_key,
    )


async def reopen_gap(conn: Any, previous: Any | None, fired_at: str, window: float) -> float | None:
    """Seconds since ``previous`` was resolved when a Fired at ``fired_at`` reopens it, else ``None``."""
    gap = rules.reopen_gap(previous, fired_at, window)
    if gap is None or previous is None:
        return None
    others = await conn.fetchval(
        "SELECT 1 FROM work_items WHERE lifecycle_key = (SELECT lifecycle_key FROM work_items WHERE id = $1)"
        " AND state = 'New' AND id != $1 LIMIT 1",
        previous["id"],
    )
    # Other instances of the rule still fire (one per dimension): this is one more, not a re-fire.
    return None if others is not None else gap


async def reopen(conn: Any, previous: Any, event: AlertEvent, fired_at: str, gap: float, window: float) -> str:
    """Bring ``previous`` back to ``New`` for ``event``; returns the note."""
    await conn.execute(
        "UPDATE work_items SET state = 'New', resolved_at = NULL, resolved_by = NULL, reopened = reopened + 1,"
        " occurrences = occurrences + 1, correlation_key = $1 WHERE id = $2",
        event.correlation_key,
        previous["id"],
    )
    await conn.execute(_ADD_ALERT, previous["id"], event.alert_id, fired_at)
    return render.reopened_note(event, fired_at, gap, window)


async def held_open(conn: Any, previous: Any | None) -> bool:
    """Whether ``previous`` is open only because flap damping held it (no alert of it still firing)."""
    if previous is None or previous["state"] != "New":
        return False
    firing = await conn.fetchval(
        "SELECT count(*) FROM work_item_alerts WHERE work_item_id = $1 AND resolved_at IS NULL", previous["id"]
    )
    return rules.held_open(previous, int(firing))


async def join_held(conn: Any, previous: Any, event: AlertEvent, fired_at: str) -> None:
    """Add ``event``'s alert to the held item; the item now answers to this event's correlation key."""
    await conn.execute(
        "UPDATE work_items SET occurrences = occurrences + 1, correlation_key = $1 WHERE id = $2",
        event.correlation_key,
        previous["id"],
    )
    await conn.execute(_ADD_ALERT, previous["id"], event.alert_id, fired_at)


async def open_item_for(conn: Any, column: KeyColumn, key: str) -> int | None:
    """The open item whose ``correlation_key`` or ``lifecycle_key`` is ``key``."""
    assert column in ("correlation_key", "lifecycle_key")
    item_id = await conn.fetchval(
        f"SELECT id FROM work_items WHERE {column} = $1 AND state = 'New' ORDER BY id DESC LIMIT 1", key
    )
    return int(item_id) if item_id is not None else None


async def resolve_whole_item(conn: Any, item_id: int, resolved_at: str, by: str) -> None:
    """Resolve the item and every alert instance still firing on it."""
    await conn.execute(
        "UPDATE work_item_alerts SET resolved_at = $1 WHERE work_item_id = $2 AND resolved_at IS NULL",
        resolved_at,
        item_id,
    )
    await conn.execute(
        "UPDATE work_items SET state = 'Resolved', resolved_at = $1, resolved_by = $2 WHERE id = $3",
        resolved_at,
        by,
        item_id,
    )
