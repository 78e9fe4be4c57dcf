"""Operators resolving or closing an embedded work item by number on PostgreSQL.

The PostgreSQL side of :func:`receiver.itsm.embedded.operations.close_work_item`: the same states and
notes as on SQLite, under the work item's per-correlation-key lock, so a replica applying an alert
of the same key waits for it (and then sees a ``Closed`` item as ended).
"""

from __future__ import annotations

from typing import Literal

from receiver.itsm.embedded.store import _now
from receiver.storage.postgres.connect import Database, DbAuth
from receiver.storage.sqlite.operations import OpsError


class WorkItemNotFoundError(OpsError):
    """No work item has that number."""


async def close_work_item(
    url: str, number: str, *, action: Literal["resolve", "close"], text: str, auth: DbAuth | str = "password"
) -> None:
    """Move work item ``number`` to ``Resolved`` (``resolve``) or ``Closed`` (``close``) and add ``text`` as a note."""
    conn = await Database(url, auth=auth).connect()
    try:
        async with conn.transaction():
            found = await conn.fetchrow("SELECT id, correlation_key FROM work_items WHERE number = $1", number)
            if found is None:
                raise WorkItemNotFoundError(f"no work item {number}; 'secure-export work-items' lists them")
            # The apply path's lock for this correlation key, then the row as it is now.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", found["correlation_key"])
            state = await conn.fetchval("SELECT state FROM work_items WHERE id = $1 FOR UPDATE", found["id"])
            now = _now()
            if action == "resolve":
                if state != "New":
                    raise OpsError(f"{number} is {state}; only a New work item can be resolved")
                await conn.execute(
                    "UPDATE work_items SET state = 'Resolved', resolved_at = $1 WHERE id = $2", now, found["id"]
                )
            else:
                if state == "Closed":
                    raise OpsError(f"{number} is already Closed")
                await conn.execute(
                    "UPDATE work_items SET state = 'Closed', closed_at = $1, resolved_at = coalesce(resolved_at, $1)"
                    " WHERE id = $2",
                    now,
                    found["id"],
                )
            await conn.execute(
                "INSERT INTO work_item_notes (work_item_id, at, text) VALUES ($1, $2, $3)",
                found["id"],
                now,
                text[:4000],
            )
    finally:
        await conn.close()
