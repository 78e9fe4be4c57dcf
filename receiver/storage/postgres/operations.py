"""Operators' actions on a PostgreSQL inbox: trace, replay, discard (see :mod:`receiver.storage.sqlite.operations`).

Same results as on SQLite. Every replay or discard also sends ``NOTIFY secure_export_inbox``
with an ``ops:`` payload, so the replica that dispatches picks replayed rows up at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from receiver.storage.postgres.connect import Database, DatabaseUrlError, connection_errors, redact
from receiver.storage.postgres.inbox import CHANNEL
from receiver.storage.readers import db_auth
from receiver.storage.records import DatabaseUnavailable, OpsError, OpsResult, iso_at, operator

_DELIVERY = (
    "id, monitor_condition, state, attempts, last_error, received_at, done_at, parked_at, work_item, work_item_url, "
    "replays, replayed_at, replayed_by, discarded_at, discarded_by, discard_reason"
)


def _database(url: str) -> Database:
    return Database(url, auth=db_auth())


def database_errors() -> tuple[type[BaseException], ...]:
    """What :func:`database_problem` turns into a message: a URL that cannot work, a database that cannot be used."""
    return (DatabaseUrlError, *connection_errors())


def database_problem(url: str, error: BaseException) -> OpsError:
    """The operator's message for a URL that cannot work or a database that cannot be used (never the password)."""
    if isinstance(error, DatabaseUrlError):
        return OpsError(f"{redact(url)}: {error}")
    return DatabaseUnavailable(f"cannot reach the PostgreSQL database {redact(url)}: {error or type(error).__name__}")


def _run(url: str, work: Any) -> Any:
    async def go() -> Any:
        try:
            conn = await _database(url).connect()
        except database_errors() as error:
            raise database_problem(url, error) from None
        try:
            if await conn.fetchval("SELECT to_regclass('inbox') IS NULL"):
                raise OpsError(f"{redact(url)} has no secure-export inbox; check --db / $SECURE_EXPORT_DB")
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def trace(url: str, alert_id: str) -> dict[str, Any]:
    """Every delivery of ``alert_id`` and the work items it became (the shape of the SQLite trace)."""

    async def work(conn: Any) -> dict[str, Any]:
        rows = await conn.fetch(f"SELECT {_DELIVERY} FROM inbox WHERE alert_id = $1 ORDER BY id", alert_id)
        embedded: list[str] = []
        if not await conn.fetchval("SELECT to_regclass('work_item_alerts') IS NULL"):
            embedded = [
                r[0]
                for r in await conn.fetch(
                    "SELECT w.number FROM work_item_alerts a JOIN work_items w ON w.id = a.work_item_id "
                    "WHERE a.alert_id = $1 ORDER BY w.id",
                    alert_id,
                )
            ]
        deliveries = []
        items: dict[str, str | None] = {}
        for row in rows:
            delivery = dict(row)
            delivery["condition"] = delivery.pop("monitor_condition")
            deliveries.append(delivery)
            if row["work_item"]:
                items.setdefault(row["work_item"], row["work_item_url"])
        for number in embedded:
            items.setdefault(number, None)
        return {
            "alert_id": alert_id,
            "deliveries": deliveries,
            "work_items": [{"number": n, "url": u} for n, u in items.items()],
        }

    result: dict[str, Any] = _run(url, work)
    return result


def _change(url: str, ids: Iterable[int] | None, statement: str, params: tuple[Any, ...]) -> OpsResult:
    async def work(conn: Any) -> OpsResult:
        async with conn.transaction():
            if ids is None:
                targets = [
                    r[0] for r in await conn.fetch("SELECT id FROM inbox WHERE state = 'parked' ORDER BY id FOR UPDATE")
                ]
                skipped: dict[int, str] = {}
            else:
                wanted = list(dict.fromkeys(ids))
                states = dict(
                    await conn.fetch("SELECT id, state FROM inbox WHERE id = ANY($1::bigint[]) FOR UPDATE", wanted)
                )
                skipped = {
                    row_id: ("no such delivery" if row_id not in states else f"it is {states[row_id]}, not parked")
                    for row_id in wanted
                    if states.get(row_id) != "parked"
                }
                targets = [row_id for row_id in wanted if row_id not in skipped]
            if targets:
                await conn.executemany(statement, [(*params, row_id) for row_id in targets])
                await conn.execute("SELECT pg_notify($1, 'ops:changed')", CHANNEL)
        return OpsResult(targets, skipped)

    result: OpsResult = _run(url, work)
    return result


def replay(url: str, ids: Iterable[int] | None, *, by: str | None = None) -> OpsResult:
    """Parked rows (``ids``, or all with ``None``) back to pending with a fresh attempt count."""
    return _change(
        url,
        ids,
        "UPDATE inbox SET state = 'pending', attempts = 0, next_attempt_at = NULL, parked_at = NULL, "
        "replays = replays + 1, replayed_at = $1, replayed_by = $2 WHERE id = $3 AND state = 'parked'",
        (iso_at(time.time()), by or operator()),
    )


def discard(url: str, ids: Iterable[int], *, reason: str, by: str | None = None) -> OpsResult:
    """Parked rows marked ``discarded`` with who and why."""
    return _change(
        url,
        ids,
        "UPDATE inbox SET state = 'discarded', discarded_at = $1, discarded_by = $2, discard_reason = $3 "
        "WHERE id = $4 AND state = 'parked'",
        (iso_at(time.time()), by or operator(), reason),
    )
