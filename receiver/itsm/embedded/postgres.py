"""The embedded ITSM backend on PostgreSQL: work items and CIs beside the shared inbox.

The same semantics as :mod:`receiver.itsm.embedded` (docs/work-items.md), stored in the tables
of migration 2 (:mod:`receiver.storage.postgres.schema`). What is specific to several replicas:

* **Numbers come from a sequence** (the ``work_items`` identity; ``number`` is generated from
  it), so two replicas never hand out the same number. A rolled-back transaction leaves a gap.
* Each event runs in one transaction (committed asynchronously: see ``apply``) that first takes ``pg_advisory_xact_lock`` on its
  correlation key: even while the dispatch lease changes hands, one key is changed by one
  transaction at a time. ``applied_events`` (primary key ``(alert_id, condition)``) written in
  the same transaction makes a replay a no-op; the partial unique index keeps one open item per
  key. A unique violation from a concurrent writer is a transient error: the retry finds the
  other's row and is ignored as a replay.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from receiver.alerts.events import AlertEvent, Condition
from receiver.itsm.base import Backend, PermanentBackendError, Readiness, TransientBackendError, WorkItemRef
from receiver.itsm.embedded.lifecycle import routed_priority, routed_values
from receiver.itsm.embedded.store import _ROUTED_FIELDS as ROUTED_FIELDS
from receiver.itsm.embedded.store import (
    MISSING_SEVERITY_KEY,
    _description,
    _iso,
    _match_resource_id,
    _now,
    _title,
    _unique_names,
    _validated_priority_map,
    work_item_number,
)
from receiver.storage.postgres.connect import Database, DbAuth, TokenSource, connection_errors, redact
from receiver.storage.postgres.schema import SchemaTooNew, migrate

_log = logging.getLogger(__name__)


class EmbeddedPostgresBackend(Backend):
    """Work items and CIs in PostgreSQL, shared by every replica."""

    name = "embedded"

    def __init__(
        self,
        url: str,
        *,
        auth: DbAuth | str = "password",
        token_source: TokenSource | None = None,
        priority_map: Mapping[str, int] | None = None,
        pool_size: int = 4,
    ) -> None:
        self.database = Database(url, auth=auth, token_source=token_source)
        self._where = redact(url)
        self._priority_map = _validated_priority_map(priority_map or {})
        self._pool_size = pool_size
        self._pool: Any = None
        self.transactions = 0

    @property
    def priority_map(self) -> Mapping[str, int]:
        """The effective severity → priority map (defaults merged with the configured one)."""
        return dict(self._priority_map)

    async def start(self) -> None:
        """Connect and bring the schema up to date (transient while the database is unreachable)."""
        if self._pool is not None:
            return
        try:
            pool = await self.database.create_pool(min_size=1, max_size=self._pool_size)
        except connection_errors() as error:
            raise TransientBackendError(f"embedded backend database {self._where} unreachable: {error}") from error
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except SchemaTooNew as error:
            await pool.close()
            raise PermanentBackendError(str(error)) from error
        except connection_errors() as error:
            await pool.close()
            raise TransientBackendError(f"embedded backend schema update failed: {error}") from error
        self._pool = pool

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def readiness(self) -> Readiness:
        """Ready when the database answers (an outage is not a reason to pause: attempts count)."""
        if self._pool is None:
            return Readiness(False, "embedded backend not started")
        try:
            async with self._pool.acquire(timeout=5) as conn:
                await conn.fetchval("SELECT 1", timeout=5)
        except connection_errors() as error:
            return Readiness(False, f"embedded backend database unavailable: {error or type(error).__name__}")
        return Readiness(True)

    async def apply(self, event: AlertEvent) -> WorkItemRef | None:
        """Apply one Fired or Resolved event in one transaction; replays change nothing."""
        if self._pool is None:
            raise TransientBackendError("embedded backend not started")
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                # Asynchronous commit, as the SQLite backend's synchronous=NORMAL: the inbox's "done"
                # for this row commits synchronously later, and flushing the WAL up to it makes this
                # earlier transaction durable too; a crash before that loses both, and the row is
                # applied again (idempotently).
                await conn.execute(
                    "SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock(hashtextextended($1, 0))",
                    event.correlation_key,
                )
                outcome, item_id = await self._apply_in_transaction(conn, event)
        except connection_errors() as error:
            raise TransientBackendError(f"embedded backend write failed: {error or type(error).__name__}") from error
        self.transactions += 1
        _log.debug(
            "work item event applied",
            extra={
                "event": "work_item_applied",
                "alert_id": event.alert_id,
                "condition": str(event.condition),
                "outcome": outcome,
            },
        )
        return WorkItemRef(work_item_number(item_id)) if item_id is not None else None

    async def prune_resolved(self, older_than_seconds: float, *, limit: int = 1000) -> int:
        """Delete Resolved/Closed work items resolved longer ago than that (with their links and notes)."""
        import time

        from receiver.storage.sqlite.inbox import _iso_at

        if self._pool is None:
            return 0
        cutoff = _iso_at(time.time() - older_than_seconds)
        async with self._pool.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM work_items WHERE id IN (SELECT id FROM work_items WHERE state IN ('Resolved', 'Closed') "
                "AND resolved_at IS NOT NULL AND resolved_at < $1 ORDER BY id LIMIT $2)",
                cutoff,
                limit,
            )
        return int(status.rsplit(" ", 1)[-1])

    async def _apply_in_transaction(self, conn: Any, event: AlertEvent) -> tuple[str, int | None]:
        condition = Condition(event.condition)
        rows = await conn.fetch(
            "SELECT condition, event_at, work_item_id FROM applied_events WHERE alert_id = $1", event.alert_id
        )
        applied = {row[0]: row[1] for row in rows}
        if condition.value in applied:
            return "replay ignored", next(row[2] for row in rows if row[0] == condition.value)
        if condition is Condition.FIRED:
            event_at = _iso(event.fired_at) if event.fired_at else _now()
            item_id, outcome = await self._fired(conn, event, event_at, applied.get(Condition.RESOLVED.value))
        else:
            event_at = _iso(event.resolved_at) if event.resolved_at else _now()
            item_id, outcome = await self._resolved(conn, event, event_at)
        ci_ids = await self._bind_cis(conn, event, event_at)
        if item_id is not None and ci_ids:
            await conn.executemany(
                "INSERT INTO work_item_cis (work_item_id, ci_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                [(item_id, ci_id) for ci_id in ci_ids],
            )
        await conn.execute(
            "INSERT INTO applied_events (alert_id, condition, work_item_id, event_at, applied_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            event.alert_id,
            condition.value,
            item_id,
            event_at,
            _now(),
        )
        return outcome, item_id

    async def _fired(
        self, conn: Any, event: AlertEvent, fired_at: str, early_resolved_at: str | None
    ) -> tuple[int, str]:
        open_id = await conn.fetchval(
            "SELECT id FROM work_items WHERE correlation_key = $1 AND state = 'New'", event.correlation_key
        )
        if open_id is not None:
            await conn.execute(
                "INSERT INTO work_item_alerts (work_item_id, alert_id, fired_at, resolved_at) VALUES ($1, $2, $3, $4)",
                open_id,
                event.alert_id,
                fired_at,
                early_resolved_at,
            )
            await conn.execute("UPDATE work_items SET occurrences = occurrences + 1 WHERE id = $1", open_id)
            text = f"New occurrence: alert {event.alert_id} fired at {fired_at}."
            if early_resolved_at:
                text += f" Its Resolved ({early_resolved_at}) arrived first, so it does not keep this item open."
            await self._note(conn, open_id, text)
            return int(open_id), "occurrence added"
        state, resolved_at = ("Resolved", early_resolved_at) if early_resolved_at else ("New", None)
        routed = routed_values(event)
        item_id = int(
            await conn.fetchval(
                "INSERT INTO work_items (correlation_key, state, severity, priority, title, description,"
                " opened_at, resolved_at, occurrences, assignment_group, category, subcategory, impact, urgency)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11, $12, $13) RETURNING id",
                event.correlation_key,
                state,
                event.severity,
                routed_priority(event, self._priority(event.severity)),
                _title(event),
                _description(event),
                fired_at,
                resolved_at,
                routed["assignment_group"],
                routed["category"],
                routed["subcategory"],
                routed["impact"],
                routed["urgency"],
            )
        )
        await conn.execute(
            "INSERT INTO work_item_alerts (work_item_id, alert_id, fired_at, resolved_at) VALUES ($1, $2, $3, $4)",
            item_id,
            event.alert_id,
            fired_at,
            early_resolved_at,
        )
        await self._note(conn, item_id, f"Opened by Azure Monitor: alert {event.alert_id} fired at {fired_at}.")
        if event.route is not None and event.route.assignment_group:
            await self._note(
                conn, item_id, f"Routed to {event.route.assignment_group} by {event.route.rule} of the routing file."
            )
        if early_resolved_at:
            await self._note(
                conn,
                item_id,
                f"Resolved at once: Azure's Resolved ({early_resolved_at}) arrived before this Fired "
                "(deliveries were retried out of order).",
            )
            return item_id, "created already resolved"
        return item_id, "created"

    async def _resolved(self, conn: Any, event: AlertEvent, resolved_at: str) -> tuple[int | None, str]:
        instance = await conn.fetchrow(
            "SELECT a.work_item_id, w.state FROM work_item_alerts a"
            " JOIN work_items w ON w.id = a.work_item_id WHERE a.alert_id = $1",
            event.alert_id,
        )
        if instance is None:
            return None, "resolved before fired (remembered)"
        item_id = int(instance[0])
        await conn.execute(
            "UPDATE work_item_alerts SET resolved_at = $1 WHERE alert_id = $2 AND resolved_at IS NULL",
            resolved_at,
            event.alert_id,
        )
        if instance[1] != "New":
            return item_id, "already resolved"
        still_firing = await conn.fetchval(
            "SELECT count(*) FROM work_item_alerts WHERE work_item_id = $1 AND resolved_at IS NULL", item_id
        )
        if still_firing:
            await self._note(
                conn,
                item_id,
                f"Alert {event.alert_id} resolved at {resolved_at}; {still_firing} grouped alert(s) still firing.",
            )
            return item_id, "instance resolved"
        await conn.execute(
            "UPDATE work_items SET state = 'Resolved', resolved_at = $1 WHERE id = $2", resolved_at, item_id
        )
        await self._note(conn, item_id, f"Resolved by Azure Monitor: alert {event.alert_id} resolved at {resolved_at}.")
        return item_id, "resolved"

    async def _bind_cis(self, conn: Any, event: AlertEvent, seen_at: str) -> list[int]:
        ci_ids: list[int] = []
        for name in _unique_names(event.configuration_items):
            resource_id = _match_resource_id(name, event.target_ids)
            # One statement whatever exists: out-of-order deliveries never move first_seen later
            # or last_seen earlier, and a known resource id is kept.
            ci_id = await conn.fetchval(
                "INSERT INTO configuration_items (name, name_key, azure_resource_id, first_seen, last_seen)"
                " VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name_key) DO UPDATE SET"
                " first_seen = LEAST(configuration_items.first_seen, excluded.first_seen),"
                " last_seen = GREATEST(configuration_items.last_seen, excluded.last_seen),"
                " azure_resource_id = COALESCE(configuration_items.azure_resource_id, excluded.azure_resource_id)"
                " RETURNING id",
                name,
                name.casefold(),
                resource_id,
                seen_at,
            )
            ci_ids.append(int(ci_id))
        return ci_ids

    async def _note(self, conn: Any, item_id: int, text: str) -> None:
        await conn.execute(
            "INSERT INTO work_item_notes (work_item_id, at, text) VALUES ($1, $2, $3)", item_id, _now(), text
        )

    def _priority(self, severity: str | None) -> int:
        return self._priority_map.get(severity or "", self._priority_map[MISSING_SEVERITY_KEY])


async def list_work_items(url: str, *, auth: DbAuth | str = "password") -> list[dict[str, Any]]:
    """Every work item with the fields of DESIGN.md, oldest first (one consistent snapshot)."""
    database = Database(url, auth=auth)
    conn = await database.connect()
    try:
        if await conn.fetchval("SELECT to_regclass('work_items') IS NULL"):
            return []
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            items = await conn.fetch("SELECT * FROM work_items ORDER BY id")
            alerts = _grouped(
                await conn.fetch("SELECT work_item_id, alert_id FROM work_item_alerts ORDER BY fired_at, seq")
            )
            notes = _grouped(
                await conn.fetch("SELECT work_item_id, at || ' ' || text FROM work_item_notes ORDER BY id")
            )
            cis = _grouped(
                await conn.fetch(
                    "SELECT l.work_item_id, c.name FROM work_item_cis l JOIN configuration_items c ON c.id = l.ci_id ORDER BY c.id"
                )
            )
    finally:
        await conn.close()
    return [
        {
            "id": row["id"],
            "number": row["number"],
            "correlation_key": row["correlation_key"],
            "alert_ids": alerts.get(row["id"], []),
            "state": row["state"],
            "severity": row["severity"],
            "priority": row["priority"],
            "title": row["title"],
            "description": row["description"],
            "configuration_items": cis.get(row["id"], []),
            "opened_at": row["opened_at"],
            "resolved_at": row["resolved_at"],
            "occurrences": row["occurrences"],
            "notes": notes.get(row["id"], []),
            **{name: row[name] for name in ROUTED_FIELDS},
            "reopened": row["reopened"],
        }
        for row in items
    ]


async def list_configuration_items(url: str, *, auth: DbAuth | str = "password") -> list[dict[str, Any]]:
    """Every CI with the fields of DESIGN.md, in order of first binding."""
    database = Database(url, auth=auth)
    conn = await database.connect()
    try:
        if await conn.fetchval("SELECT to_regclass('configuration_items') IS NULL"):
            return []
        rows = await conn.fetch(
            "SELECT id, name, azure_resource_id, first_seen, last_seen FROM configuration_items ORDER BY id"
        )
    finally:
        await conn.close()
    return [dict(row) for row in rows]


def _grouped(records: Any) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for key, value in records:
        grouped.setdefault(int(key), []).append(value)
    return grouped
