"""The lifecycle rules' tables in PostgreSQL (schema version 4), shared by the receiver's replicas.

The dispatch lease holder writes them (it observes every applied event and runs the sweep);
due timers are taken with ``FOR UPDATE SKIP LOCKED`` and each becomes an inbox row in the
transaction that deletes it, so an ex-holder still sweeping cannot store one twice.
docs/postgresql.md, "Lifecycle rules", explains the choice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from receiver.storage.lifecycle import Delivery, StoredResolution, Timer, TimerReason
from receiver.storage.postgres.inbox import PostgresInbox

__all__ = ["PostgresLifecycleStore"]

_SET_TIMER = (
    "INSERT INTO lifecycle_timers (correlation_key, reason, due_at, after_seconds, essentials)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (correlation_key, reason) DO UPDATE SET"
    " due_at = excluded.due_at, after_seconds = excluded.after_seconds, essentials = excluded.essentials"
)
_TIMER_COLUMNS = "correlation_key, reason, due_at, after_seconds, essentials"


def _timer(record: Any) -> Timer:
    return Timer(str(record[0]), cast(TimerReason, str(record[1])), float(record[2]), float(record[3]), str(record[4]))


async def _set(conn: Any, timer: Timer) -> None:
    await conn.execute(
        _SET_TIMER, timer.correlation_key, timer.reason, timer.due_at, timer.after_seconds, timer.essentials
    )


async def _cancel_flap(conn: Any, correlation_key: str) -> None:
    # Always: another replica may have held a Resolved of this key before the lease moved here.
    await conn.execute(
        "DELETE FROM lifecycle_timers WHERE correlation_key = $1 AND reason = 'flap-quiet'", correlation_key
    )


class PostgresLifecycleStore:
    """:class:`receiver.storage.lifecycle.LifecycleStore` in the PostgreSQL inbox's database."""

    def __init__(self, inbox: PostgresInbox) -> None:
        self.inbox = inbox

    async def open(self) -> None:
        async def check(conn: Any) -> None:
            if await conn.fetchval("SELECT to_regclass('lifecycle_timers') IS NULL"):
                raise RuntimeError("the lifecycle tables are missing: the inbox's schema migrations did not run")

        await self.inbox.run_in_transaction(check)

    async def cycles(self, lifecycle_key: str, alert_id: str, since: float) -> int:
        async def count(conn: Any) -> int:
            record = await conn.fetchrow(
                "SELECT EXISTS (SELECT 1 FROM lifecycle_firing WHERE lifecycle_key = $1 AND alert_id <> $2),"
                " (SELECT count(*) FROM lifecycle_refires WHERE lifecycle_key = $1 AND at >= $3)",
                lifecycle_key,
                alert_id,
                since,
            )
            if record[0]:
                return 0  # another instance still fires: this Resolved does not end a cycle
            return int(record[1]) + 1

        return await self.inbox.run_in_transaction(count)

    async def ended(self, lifecycle_key: str) -> None:
        async def forget(conn: Any) -> None:
            await conn.execute("DELETE FROM lifecycle_firing WHERE lifecycle_key = $1", lifecycle_key)

        await self.inbox.run_in_transaction(forget)

    async def resolved(self, lifecycle_key: str, alert_id: str, now: float, hold: Timer | None) -> None:
        async def record(conn: Any) -> None:
            await conn.execute(
                "DELETE FROM lifecycle_firing WHERE lifecycle_key = $1 AND alert_id = $2", lifecycle_key, alert_id
            )
            await conn.execute(
                "INSERT INTO lifecycle_clear (lifecycle_key, cleared_at) SELECT $1, $2"
                " WHERE NOT EXISTS (SELECT 1 FROM lifecycle_firing WHERE lifecycle_key = $1)"
                " ON CONFLICT (lifecycle_key) DO UPDATE SET cleared_at = excluded.cleared_at",
                lifecycle_key,
                now,
            )
            if hold is not None:
                await _set(conn, hold)

        await self.inbox.run_in_transaction(record)

    async def fired(self, correlation_key: str, lifecycle_key: str, alert_id: str, now: float, window: float) -> None:
        async def record(conn: Any) -> None:
            await _cancel_flap(conn, correlation_key)
            refire = await conn.fetchval(
                "SELECT NOT EXISTS (SELECT 1 FROM lifecycle_firing WHERE lifecycle_key = $1)"
                " AND EXISTS (SELECT 1 FROM lifecycle_clear WHERE lifecycle_key = $1 AND cleared_at >= $2)",
                lifecycle_key,
                now - window,
            )
            inserted = await conn.fetchval(
                "INSERT INTO lifecycle_firing (lifecycle_key, alert_id, fired_at) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING RETURNING true",
                lifecycle_key,
                alert_id,
                now,
            )
            if refire and inserted:  # not for a replay
                await conn.execute(
                    "INSERT INTO lifecycle_refires (lifecycle_key, alert_id, at) VALUES ($1, $2, $3)"
                    " ON CONFLICT DO NOTHING",
                    lifecycle_key,
                    alert_id,
                    now,
                )
                await conn.execute(
                    "DELETE FROM lifecycle_refires WHERE lifecycle_key = $1 AND at < $2",
                    lifecycle_key,
                    now - max(window, 0.0),
                )

        await self.inbox.run_in_transaction(record)

    async def fired_stateless(self, correlation_key: str, ttl: Timer | None) -> None:
        async def record(conn: Any) -> None:
            await _cancel_flap(conn, correlation_key)
            if ttl is not None:
                await _set(conn, ttl)

        await self.inbox.run_in_transaction(record)

    async def take_due(
        self, now: float, limit: int, to_delivery: Callable[[Timer], Delivery]
    ) -> list[StoredResolution]:
        inbox = self.inbox

        async def take(conn: Any) -> list[StoredResolution]:
            # SKIP LOCKED: timers another transaction is taking (an ex-holder's last sweep) are its own.
            records = await conn.fetch(
                f"SELECT {_TIMER_COLUMNS} FROM lifecycle_timers WHERE due_at <= $1"
                " ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                now,
                limit,
            )
            stored = []
            for timer in map(_timer, records):
                alert_id, body = to_delivery(timer)
                row = await inbox.insert_in_transaction(conn, alert_id, "Resolved", body)
                await conn.execute(
                    "DELETE FROM lifecycle_timers WHERE correlation_key = $1 AND reason = $2 AND due_at = $3",
                    timer.correlation_key,
                    timer.reason,
                    timer.due_at,
                )
                stored.append(StoredResolution(timer, alert_id, row is not None))
            return stored

        return await inbox.run_in_transaction(take)

    async def forget_firing_before(self, before: float) -> None:
        async def forget(conn: Any) -> None:
            await conn.execute("DELETE FROM lifecycle_firing WHERE fired_at < $1", before)

        await self.inbox.run_in_transaction(forget)

    async def timers(self) -> list[Timer]:
        async def read(conn: Any) -> list[Timer]:
            return [
                _timer(r) for r in await conn.fetch(f"SELECT {_TIMER_COLUMNS} FROM lifecycle_timers ORDER BY due_at")
            ]

        return await self.inbox.run_in_transaction(read)
