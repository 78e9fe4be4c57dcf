"""The lifecycle rules' tables in the SQLite inbox's file, written through the inbox's one writer.

Every method is one operation of the inbox writer (``Inbox.run_in_transaction``): one writer, one
lock, and a due timer's Resolved is stored in the same transaction as the timer's deletion.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import cast

from receiver.storage.lifecycle import Delivery, StoredResolution, Timer, TimerReason
from receiver.storage.sqlite.inbox import Inbox

__all__ = ["SqliteLifecycleStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lifecycle_timers (
    correlation_key TEXT NOT NULL,
    reason          TEXT NOT NULL CHECK (reason IN ('stateless-ttl', 'flap-quiet')),
    due_at          REAL NOT NULL,
    after_seconds   REAL NOT NULL,
    essentials      TEXT NOT NULL,
    PRIMARY KEY (correlation_key, reason)
);
CREATE INDEX IF NOT EXISTS lifecycle_timers_due ON lifecycle_timers (due_at);
CREATE TABLE IF NOT EXISTS lifecycle_firing (
    lifecycle_key TEXT NOT NULL,
    alert_id      TEXT NOT NULL,
    fired_at      REAL NOT NULL,
    PRIMARY KEY (lifecycle_key, alert_id)
);
CREATE TABLE IF NOT EXISTS lifecycle_clear (
    lifecycle_key TEXT PRIMARY KEY,
    cleared_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS lifecycle_refires (
    lifecycle_key TEXT NOT NULL,
    alert_id      TEXT NOT NULL,
    at            REAL NOT NULL,
    PRIMARY KEY (lifecycle_key, alert_id)
);
"""

_SET_TIMER = (
    "INSERT INTO lifecycle_timers (correlation_key, reason, due_at, after_seconds, essentials)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (correlation_key, reason) DO UPDATE SET"
    " due_at = excluded.due_at, after_seconds = excluded.after_seconds, essentials = excluded.essentials"
)
_TIMER_COLUMNS = "correlation_key, reason, due_at, after_seconds, essentials"


def _timer(row: tuple[object, ...]) -> Timer:
    return Timer(
        str(row[0]),
        cast(TimerReason, str(row[1])),
        float(cast(float, row[2])),
        float(cast(float, row[3])),
        str(row[4]),
    )


def _set(conn: sqlite3.Connection, timer: Timer) -> None:
    conn.execute(_SET_TIMER, (timer.correlation_key, timer.reason, timer.due_at, timer.after_seconds, timer.essentials))


class SqliteLifecycleStore:
    """:class:`receiver.storage.lifecycle.LifecycleStore` in the SQLite inbox's database."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self._flap_timers = True
        """Whether a flap-quiet timer may exist (a Fired then cancels it); only this process writes them."""

    async def open(self) -> None:
        def create(conn: sqlite3.Connection) -> bool:
            # Statement by statement: executescript would commit the writer's transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            found = conn.execute("SELECT 1 FROM lifecycle_timers WHERE reason = 'flap-quiet' LIMIT 1").fetchone()
            return found is not None

        self._flap_timers = bool(await self.inbox.run_in_transaction(create))

    async def cycles(self, lifecycle_key: str, alert_id: str, since: float) -> int:
        def count(conn: sqlite3.Connection) -> int:
            # One statement (each costs the writer thread a GIL round trip).
            others, refires = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM lifecycle_firing WHERE lifecycle_key = ?1 AND alert_id != ?2),"
                " (SELECT COUNT(*) FROM lifecycle_refires WHERE lifecycle_key = ?1 AND at >= ?3)",
                (lifecycle_key, alert_id, since),
            ).fetchone()
            if others:
                return 0  # another instance still fires: this Resolved does not end a cycle
            return int(refires) + 1

        return int(await self.inbox.run_in_transaction(count))

    async def ended(self, lifecycle_key: str) -> None:
        def forget(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM lifecycle_firing WHERE lifecycle_key = ?", (lifecycle_key,))

        await self.inbox.run_in_transaction(forget)

    async def resolved(self, lifecycle_key: str, alert_id: str, now: float, hold: Timer | None) -> None:
        if hold is not None:
            self._flap_timers = True

        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM lifecycle_firing WHERE lifecycle_key = ? AND alert_id = ?", (lifecycle_key, alert_id)
            )
            # Cleared when nothing of the rule fires any more.
            conn.execute(
                "INSERT INTO lifecycle_clear (lifecycle_key, cleared_at) SELECT ?1, ?2"
                " WHERE NOT EXISTS (SELECT 1 FROM lifecycle_firing WHERE lifecycle_key = ?1)"
                " ON CONFLICT (lifecycle_key) DO UPDATE SET cleared_at = excluded.cleared_at",
                (lifecycle_key, now),
            )
            if hold is not None:
                _set(conn, hold)

        await self.inbox.run_in_transaction(record)

    def _cancel_flap(self, conn: sqlite3.Connection, correlation_key: str) -> None:
        if self._flap_timers:
            conn.execute(
                "DELETE FROM lifecycle_timers WHERE correlation_key = ? AND reason = 'flap-quiet'", (correlation_key,)
            )

    async def fired(self, correlation_key: str, lifecycle_key: str, alert_id: str, now: float, window: float) -> None:
        def record(conn: sqlite3.Connection) -> None:
            self._cancel_flap(conn, correlation_key)
            # A cycle begins when this Fired finds nothing of its rule firing, shortly after it cleared.
            refire = conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM lifecycle_firing WHERE lifecycle_key = ?1)"
                " AND EXISTS (SELECT 1 FROM lifecycle_clear WHERE lifecycle_key = ?1 AND cleared_at >= ?2)",
                (lifecycle_key, now - window),
            ).fetchone()[0]
            inserted = conn.execute(
                "INSERT OR IGNORE INTO lifecycle_firing (lifecycle_key, alert_id, fired_at) VALUES (?, ?, ?)",
                (lifecycle_key, alert_id, now),
            ).rowcount
            if refire and inserted:  # not for a replay
                conn.execute(
                    "INSERT OR IGNORE INTO lifecycle_refires (lifecycle_key, alert_id, at) VALUES (?, ?, ?)",
                    (lifecycle_key, alert_id, now),
                )
                conn.execute(
                    "DELETE FROM lifecycle_refires WHERE lifecycle_key = ? AND at < ?",
                    (lifecycle_key, now - max(window, 0.0)),
                )

        await self.inbox.run_in_transaction(record)

    async def fired_stateless(self, correlation_key: str, ttl: Timer | None) -> None:
        def record(conn: sqlite3.Connection) -> None:
            self._cancel_flap(conn, correlation_key)
            if ttl is not None:
                _set(conn, ttl)

        await self.inbox.run_in_transaction(record)

    async def take_due(
        self, now: float, limit: int, to_delivery: Callable[[Timer], Delivery]
    ) -> list[StoredResolution]:
        inbox = self.inbox

        def take(conn: sqlite3.Connection) -> list[StoredResolution]:
            rows = conn.execute(
                f"SELECT {_TIMER_COLUMNS} FROM lifecycle_timers WHERE due_at <= ? ORDER BY due_at LIMIT ?",
                (now, limit),
            ).fetchall()
            stored = []
            for timer in map(_timer, rows):
                alert_id, body = to_delivery(timer)
                row = inbox.insert_in_transaction(conn, alert_id, "Resolved", body)
                conn.execute(
                    "DELETE FROM lifecycle_timers WHERE correlation_key = ? AND reason = ? AND due_at = ?",
                    (timer.correlation_key, timer.reason, timer.due_at),
                )
                stored.append(StoredResolution(timer, alert_id, row is not None))
            return stored

        result: list[StoredResolution] = await inbox.run_in_transaction(take)
        return result

    async def forget_firing_before(self, before: float) -> None:
        def forget(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM lifecycle_firing WHERE fired_at < ?", (before,))

        await self.inbox.run_in_transaction(forget)

    async def timers(self) -> list[Timer]:
        def read(conn: sqlite3.Connection) -> list[Timer]:
            return [
                _timer(row)
                for row in conn.execute(f"SELECT {_TIMER_COLUMNS} FROM lifecycle_timers ORDER BY due_at").fetchall()
            ]

        result: list[Timer] = await self.inbox.run_in_transaction(read)
        return result
