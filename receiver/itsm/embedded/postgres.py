"""The embedded ITSM backend on PostgreSQL: work items and CIs beside the shared inbox, for several replicas.

The semantics of the SQLite store (docs/work-items.md) in the tables of migration 2
(:mod:`receiver.storage.postgres.schema`); docs/postgresql.md says how replicas stay apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from receiver.alerts.events import AlertEvent, Condition
from receiver.itsm.base import Backend, PermanentBackendError, Readiness, TransientBackendError
from receiver.itsm.embedded import lifecycle_postgres as lifecycle
from receiver.itsm.embedded import lifecycle_rules, render
from receiver.itsm.embedded.applied_log import log_applied
from receiver.itsm.embedded.clock import iso, now
from receiver.itsm.embedded.lifecycle_rules import KeyColumn
from receiver.itsm.embedded.new_item import NEW_ITEM_COLUMNS, new_item_values
from receiver.itsm.embedded.operations import prune_resolved_postgres
from receiver.itsm.embedded.priority import validated_priority_map
from receiver.itsm.embedded.schema import work_item_number
from receiver.itsm.embedded.targets import ci_bindings
from receiver.storage.postgres.connect import Database, DbAuth, TokenSource, connection_errors, redact
from receiver.storage.postgres.schema import SchemaTooNew, migrate
from receiver.storage.records import WorkItemRef

__all__ = ["EmbeddedPostgresBackend"]


_LOCK_AND_RELAX_COMMIT = (
    "SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock(hashtextextended($1, 0)),"
    " pg_advisory_xact_lock(hashtextextended($2, 0))"
)
"""Asynchronous commit for this transaction, then the locks of the event's correlation key and of its
rule and targets (the key the lifecycle rules find items by; the same lock twice when they are equal)."""

_INSERT_ITEM = (
    f"INSERT INTO work_items ({', '.join(NEW_ITEM_COLUMNS)}, lifecycle_key, resolved_by)"
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(NEW_ITEM_COLUMNS) + 3))}) RETURNING id"
)


class EmbeddedPostgresBackend(Backend):
    """Work items and CIs in PostgreSQL, shared by every replica.

    Numbers come from the ``work_items`` identity, so replicas never hand out the same one (a
    rolled-back transaction leaves a gap). Each event runs in one transaction holding the advisory
    locks of its correlation key and of its rule and targets (the lifecycle rules of
    :mod:`receiver.itsm.embedded.lifecycle_rules` find items by the latter); ``applied_events`` in
    the same transaction makes a replay a no-op, and a unique violation from a concurrent writer is
    transient (the retry sees it as a replay).
    """

    name = "embedded"

    def __init__(
        self,
        url: str,
        *,
        auth: DbAuth | str = "password",
        token_source: TokenSource | None = None,
        priority_map: Mapping[str, int] | None = None,
        pool_size: int = 4,
        reopen_window: float = 3600.0,
    ) -> None:
        self.reopen_window = reopen_window
        """Seconds: a Fired reopens the item of its rule and targets that Azure resolved this recently."""
        self.database = Database(url, auth=auth, token_source=token_source)
        self._where = redact(url)
        self._priority_map = validated_priority_map(priority_map or {})
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
                # Asynchronous commit, as the SQLite store's synchronous=NORMAL: the inbox's "done"
                # for this row commits synchronously later, and flushing the WAL up to it makes this
                # earlier transaction durable too; a crash before that loses both, and the row is
                # applied again (idempotently).
                await conn.execute(
                    _LOCK_AND_RELAX_COMMIT, event.correlation_key, event.lifecycle_key or event.correlation_key
                )
                outcome, item_id = await self._apply_in_transaction(conn, event)
        except connection_errors() as error:
            raise TransientBackendError(f"embedded backend write failed: {error or type(error).__name__}") from error
        self.transactions += 1
        log_applied(event, outcome)
        return WorkItemRef(work_item_number(item_id)) if item_id is not None else None

    async def prune_resolved(self, older_than_seconds: float, *, limit: int = 1000) -> int:
        """Delete Resolved/Closed work items past retention (see :mod:`receiver.itsm.embedded.operations`)."""
        if self._pool is None:
            return 0
        async with self._pool.acquire() as conn:
            return await prune_resolved_postgres(conn, older_than_seconds, limit=limit)

    async def _apply_in_transaction(self, conn: Any, event: AlertEvent) -> tuple[str, int | None]:
        condition = Condition(event.condition)
        rows = await conn.fetch(
            "SELECT condition, event_at, work_item_id FROM applied_events WHERE alert_id = $1", event.alert_id
        )
        applied = {row[0]: row[1] for row in rows}
        if condition.value in applied:
            return "replay ignored", next(row[2] for row in rows if row[0] == condition.value)
        item_id: int | None
        if condition is Condition.FIRED:
            event_at = iso(event.fired_at) if event.fired_at else now()
            if event.recovery:
                item_id, outcome = await self._resolve_for(conn, event, "lifecycle_key", event.lifecycle_key, event_at)
            else:
                item_id, outcome = await self._fired(conn, event, event_at, applied.get(Condition.RESOLVED.value))
        else:
            event_at = iso(event.resolved_at) if event.resolved_at else now()
            if event.lifecycle_reason is not None:
                item_id, outcome = await self._resolve_for(
                    conn, event, "correlation_key", event.correlation_key, event_at
                )
            else:
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
            now(),
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
            await _note(conn, open_id, render.occurrence_note(event, fired_at, early_resolved_at))
            return int(open_id), "occurrence added"
        previous = await lifecycle.previous_item(conn, event)
        if not early_resolved_at and previous is not None and await lifecycle.held_open(conn, previous):
            await lifecycle.join_held(conn, previous, event, fired_at)
            await _note(conn, int(previous["id"]), render.flapping_note(event, fired_at))
            return int(previous["id"]), "occurrence added (flapping)"
        gap = None if early_resolved_at else await lifecycle.reopen_gap(conn, previous, fired_at, self.reopen_window)
        if previous is not None and gap is not None:
            note = await lifecycle.reopen(conn, previous, event, fired_at, gap, self.reopen_window)
            await _note(conn, int(previous["id"]), note)
            return int(previous["id"]), "reopened"
        item_id = int(
            await conn.fetchval(
                _INSERT_ITEM,
                *new_item_values(
                    event, opened_at=fired_at, resolved_first_at=early_resolved_at, priority_map=self._priority_map
                ),
                event.lifecycle_key or None,
                "azure" if early_resolved_at else None,
            )
        )
        await conn.execute(
            "INSERT INTO work_item_alerts (work_item_id, alert_id, fired_at, resolved_at) VALUES ($1, $2, $3, $4)",
            item_id,
            event.alert_id,
            fired_at,
            early_resolved_at,
        )
        await _note(conn, item_id, render.opened_note(event, fired_at))
        for text in (render.routed_note(event), lifecycle_rules.not_reopened_note(previous)):
            if text:
                await _note(conn, item_id, text)
        if early_resolved_at:
            await _note(conn, item_id, render.resolved_first_note(early_resolved_at))
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
        still_firing = int(
            await conn.fetchval(
                "SELECT count(*) FROM work_item_alerts WHERE work_item_id = $1 AND resolved_at IS NULL", item_id
            )
        )
        if still_firing:
            await _note(conn, item_id, render.still_firing_note(event, resolved_at, still_firing))
            return item_id, "instance resolved"
        if event.hold:
            await _note(conn, item_id, event.hold)
            return item_id, "held (flapping)"
        await conn.execute(
            "UPDATE work_items SET state = 'Resolved', resolved_at = $1, resolved_by = 'azure' WHERE id = $2",
            resolved_at,
            item_id,
        )
        await _note(conn, item_id, render.resolved_note(event, resolved_at))
        return item_id, "resolved"

    async def _resolve_for(
        self, conn: Any, event: AlertEvent, column: KeyColumn, key: str, at: str
    ) -> tuple[int | None, str]:
        """A resolution of the whole open item of ``key``: a recovery, or one the receiver made."""
        item_id = await lifecycle.open_item_for(conn, column, key) if key else None
        if item_id is None:
            return None, "nothing open to resolve"
        await lifecycle.resolve_whole_item(conn, item_id, at, "azure" if event.recovery else "receiver")
        await _note(conn, item_id, render.receiver_resolution_note(event))
        return item_id, "resolved"

    async def _bind_cis(self, conn: Any, event: AlertEvent, seen_at: str) -> list[int]:
        ci_ids: list[int] = []
        for name, resource_id in ci_bindings(event):
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


async def _note(conn: Any, item_id: int, text: str) -> None:
    await conn.execute("INSERT INTO work_item_notes (work_item_id, at, text) VALUES ($1, $2, $3)", item_id, now(), text)
