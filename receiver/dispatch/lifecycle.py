"""Work-item lifecycle beyond Fired/Resolved: flap damping and resolving what Azure never resolves.

The reopen window itself is applied by each backend (it needs the backend's own items); this
module keeps what must outlive a restart in the inbox's database, beside the inbox:

* ``lifecycle_firing``/``lifecycle_clear``/``lifecycle_refires``: per rule and targets (the event's
  ``lifecycle_key``), the alert instances firing, when the last one resolved, and every Fired that
  came while none was firing within the reopen window (a fire/resolve cycle: instances that overlap,
  such as one per metric dimension, are not cycles). A Resolved that clears the rule and would
  complete more than ``flap_cycles`` cycles within the window is **held**: the backend keeps the
  item open with a "flapping" note, and a ``flap-quiet`` timer resolves it once no Fired came for
  ``flap_quiet`` seconds.
* ``lifecycle_timers``: one due time per correlation key and reason. ``stateless-ttl`` is set (and
  restarted) by every Fired of a :data:`STATELESS_SERVICES` alert when ``SECURE_EXPORT_STATELESS_TTL``
  is on; ``flap-quiet`` as above, cancelled by a Fired.

A due timer becomes an ordinary inbox row: a Resolved the receiver writes itself, with a unique
alert id and a ``secureExportLifecycle`` block (reason, correlation key, note). So it is durable,
ordered with the key's other deliveries by the dispatcher, retried like any delivery, and visible in
``secure-export trace``. The backends resolve the whole item of that key with the note.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from receiver.alerts.events import LIFECYCLE_KEY, SYNTHETIC_ALERT_PREFIX, AlertEvent, Condition
from receiver.storage.sqlite.inbox import Inbox
from secure_export.durations import format_duration

log = logging.getLogger(__name__)

__all__ = ["STATELESS_SERVICES", "Lifecycle"]

STATELESS_SERVICES = frozenset(
    name.casefold()
    for name in (
        "Activity Log - Administrative",
        "Activity Log - Policy",
        "Activity Log - Autoscale",
        "Activity Log - Security",
        "Activity Log - Recommendation",
        "ServiceHealth",
        "Resource Health",
        "CostAlerts",
        "Budget",
        "Log Analytics",
    )
)
"""``essentials.monitoringService`` values of alerts Azure never sends Resolved for (docs/routing.md):
activity log (administrative, policy, autoscale, security, recommendation), service health, resource health, cost
and budget alerts, and log alerts of the legacy Log Analytics API."""

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

_FIRING_RETENTION_SECONDS = 30 * 86400.0
"""Alert instances still marked firing after this long are forgotten (their Resolved was lost)."""

_SWEEP_BATCH = 200


def is_stateless(event: AlertEvent) -> bool:
    """Whether Azure never resolves alerts of this event's monitoring service."""
    return (event.monitoring_service or "").casefold() in STATELESS_SERVICES


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Lifecycle:
    """Flap damping and lifecycle timers for one receiver (see the module docstring)."""

    def __init__(
        self,
        inbox: Inbox,
        *,
        reopen_window: float = 3600.0,
        stateless_ttl: float | None = None,
        flap_cycles: int = 3,
        flap_quiet: float = 900.0,
        sweep_interval: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inbox = inbox
        self.reopen_window = reopen_window
        self.stateless_ttl = stateless_ttl
        self.flap_cycles = flap_cycles
        self.flap_quiet = flap_quiet
        self.sweep_interval = sweep_interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.resolutions = 0
        """Resolutions the receiver has stored itself (due timers turned into inbox rows)."""
        self._flap_timers = True
        """Whether a flap-quiet timer may exist (a Fired then cancels it); only this process writes them."""

    async def open(self) -> None:
        """Create the tables (idempotent) and start the sweeper."""

        def create(conn: sqlite3.Connection) -> bool:
            # Statement by statement: executescript would commit the writer's transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            return (
                conn.execute("SELECT 1 FROM lifecycle_timers WHERE reason = 'flap-quiet' LIMIT 1").fetchone()
                is not None
            )

        self._flap_timers = await self.inbox.run_in_transaction(create)
        if self._task is None:
            self._task = asyncio.create_task(self._sweep_loop(), name="lifecycle-sweeper")

    async def close(self) -> None:
        """Stop the sweeper; timers stay in the database for the next start."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- around each backend call (the dispatcher, in key order) -----------------------------

    async def before_apply(self, event: AlertEvent) -> AlertEvent:
        """The event as the backend should apply it: a Resolved of a flapping rule is held."""
        if (
            event.condition is not Condition.RESOLVED
            or event.lifecycle_reason is not None
            or self.flap_cycles <= 0
            or self.reopen_window <= 0
            or is_stateless(event)
        ):
            return event
        since = self._clock() - self.reopen_window

        def count(conn: sqlite3.Connection) -> int:
            # One statement (each costs the writer thread a GIL round trip).
            others, refires = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM lifecycle_firing WHERE lifecycle_key = ?1 AND alert_id != ?2),"
                " (SELECT COUNT(*) FROM lifecycle_refires WHERE lifecycle_key = ?1 AND at >= ?3)",
                (event.lifecycle_key, event.alert_id, since),
            ).fetchone()
            if others:
                return 0  # another instance still fires: this Resolved does not end a cycle
            return int(refires) + 1

        cycles = await self.inbox.run_in_transaction(count)
        if cycles <= self.flap_cycles:
            return event
        note = (
            f"Flapping: {cycles} fire/resolve cycles within {format_duration(self.reopen_window)} "
            f"(more than {self.flap_cycles}, SECURE_EXPORT_FLAP_CYCLES). Azure resolved alert {event.alert_id}, but "
            f"the item stays open and resolves after {format_duration(self.flap_quiet)} without a new Fired."
        )
        return dataclasses.replace(event, hold=note)

    async def after_apply(self, event: AlertEvent) -> None:
        """Record the fire or resolve, set or cancel timers; idempotent, so a replay may call it again."""
        now = self._clock()
        key, lifecycle_key = event.correlation_key, event.lifecycle_key
        template = json.dumps(dict(event.essentials), sort_keys=True, default=str)
        stateless = is_stateless(event)

        def record(conn: sqlite3.Connection) -> None:
            if event.lifecycle_reason is not None or event.recovery:
                # The item resolved as a whole: nothing of this rule fires any more.
                conn.execute("DELETE FROM lifecycle_firing WHERE lifecycle_key = ?", (lifecycle_key,))
                return
            if event.condition is Condition.RESOLVED:
                conn.execute(
                    "DELETE FROM lifecycle_firing WHERE lifecycle_key = ? AND alert_id = ?",
                    (lifecycle_key, event.alert_id),
                )
                # Cleared when nothing of the rule fires any more.
                conn.execute(
                    "INSERT INTO lifecycle_clear (lifecycle_key, cleared_at) SELECT ?1, ?2"
                    " WHERE NOT EXISTS (SELECT 1 FROM lifecycle_firing WHERE lifecycle_key = ?1)"
                    " ON CONFLICT (lifecycle_key) DO UPDATE SET cleared_at = excluded.cleared_at",
                    (lifecycle_key, now),
                )
                if event.hold:
                    self._flap_timers = True
                    self._set_timer(conn, key, "flap-quiet", now, self.flap_quiet, template)
                return
            if self._flap_timers:
                conn.execute("DELETE FROM lifecycle_timers WHERE correlation_key = ? AND reason = 'flap-quiet'", (key,))
            if stateless:
                if self.stateless_ttl:
                    self._set_timer(conn, key, "stateless-ttl", now, self.stateless_ttl, template)
                return  # never resolved by Azure: not tracked as firing, never flapping
            # A cycle begins when this Fired finds nothing of its rule firing, shortly after it cleared.
            refire = conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM lifecycle_firing WHERE lifecycle_key = ?1)"
                " AND EXISTS (SELECT 1 FROM lifecycle_clear WHERE lifecycle_key = ?1 AND cleared_at >= ?2)",
                (lifecycle_key, now - self.reopen_window),
            ).fetchone()[0]
            inserted = conn.execute(
                "INSERT OR IGNORE INTO lifecycle_firing (lifecycle_key, alert_id, fired_at) VALUES (?, ?, ?)",
                (lifecycle_key, event.alert_id, now),
            ).rowcount
            if refire and inserted:  # not for a replay
                conn.execute(
                    "INSERT OR IGNORE INTO lifecycle_refires (lifecycle_key, alert_id, at) VALUES (?, ?, ?)",
                    (lifecycle_key, event.alert_id, now),
                )
                conn.execute(
                    "DELETE FROM lifecycle_refires WHERE lifecycle_key = ? AND at < ?",
                    (lifecycle_key, now - max(self.reopen_window, 0.0)),
                )

        await self.inbox.run_in_transaction(record)

    @staticmethod
    def _set_timer(conn: sqlite3.Connection, key: str, reason: str, now: float, after: float, template: str) -> None:
        conn.execute(
            "INSERT INTO lifecycle_timers (correlation_key, reason, due_at, after_seconds, essentials)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (correlation_key, reason) DO UPDATE SET"
            " due_at = excluded.due_at, after_seconds = excluded.after_seconds, essentials = excluded.essentials",
            (key, reason, now + after, after, template),
        )

    # -- the sweeper -------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the timers stay; the next sweep tries again
                log.warning("lifecycle sweep failed", extra={"event": "lifecycle_sweep_failed", "error": str(error)})
            await asyncio.sleep(self.sweep_interval)

    async def sweep(self) -> int:
        """Turn every due timer into a stored Resolved; returns how many. Safe to repeat after a crash."""
        now = self._clock()

        def due(conn: sqlite3.Connection) -> list[tuple[str, str, float, float, str]]:
            rows = conn.execute(
                "SELECT correlation_key, reason, due_at, after_seconds, essentials FROM lifecycle_timers"
                " WHERE due_at <= ? ORDER BY due_at LIMIT ?",
                (now, _SWEEP_BATCH),
            ).fetchall()
            return [(str(r[0]), str(r[1]), float(r[2]), float(r[3]), str(r[4])) for r in rows]

        timers = await self.inbox.run_in_transaction(due)
        await self.inbox.run_in_transaction(
            lambda conn: (
                conn.execute("DELETE FROM lifecycle_firing WHERE fired_at < ?", (now - _FIRING_RETENTION_SECONDS,))
                and None
            )
        )
        for key, reason, due_at, after, template in timers:
            alert_id, body = synthetic_resolved(key, reason, due_at, after, json.loads(template), now)
            # The alert id is derived from the timer, so a put repeated after a crash is a duplicate.
            await self.inbox.put(alert_id, Condition.RESOLVED.value, body)

            def forget(conn: sqlite3.Connection, key: str = key, reason: str = reason, due_at: float = due_at) -> None:
                # Only this due time: a Fired that restarted the clock meanwhile keeps its timer.
                conn.execute(
                    "DELETE FROM lifecycle_timers WHERE correlation_key = ? AND reason = ? AND due_at = ?",
                    (key, reason, due_at),
                )

            await self.inbox.run_in_transaction(forget)
            self.resolutions += 1
            log.info(
                "lifecycle resolution stored",
                extra={"event": "lifecycle_resolution", "reason": reason, "alert_id": alert_id},
            )
        return len(timers)

    async def pending_timers(self) -> list[dict[str, Any]]:
        """The timers not yet due, for tests and operators: key, reason, due time."""

        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT correlation_key, reason, due_at FROM lifecycle_timers ORDER BY due_at"
            ).fetchall()
            return [{"correlation_key": r[0], "reason": r[1], "due_at": _iso(float(r[2]))} for r in rows]

        result: list[dict[str, Any]] = await self.inbox.run_in_transaction(read)
        return result


def synthetic_resolved(
    key: str, reason: str, due_at: float, after: float, essentials: dict[str, Any], now: float
) -> tuple[str, bytes]:
    """The alert id and body of the Resolved the receiver stores for a due timer."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    alert_id = f"{SYNTHETIC_ALERT_PREFIX}{reason}/{digest}/{int(due_at * 1000)}"
    service = essentials.get("monitoringService") or "this monitoring service"
    if reason == "stateless-ttl":
        note = (
            f"Resolved by secure-export: no repeat of this alert for {format_duration(after)} "
            f"(SECURE_EXPORT_STATELESS_TTL). Azure never sends Resolved for {service} alerts; "
            "a new occurrence opens or reopens an item."
        )
    else:
        note = (
            f"Resolved by secure-export: no Fired for {format_duration(after)} after flapping "
            "(SECURE_EXPORT_FLAP_QUIET)."
        )
    document = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                **essentials,
                "alertId": alert_id,
                "monitorCondition": Condition.RESOLVED.value,
                "resolvedDateTime": _iso(now),
            },
            "alertContext": {},
        },
        LIFECYCLE_KEY: {"reason": reason, "key": key, "note": note, "afterSeconds": after},
    }
    return alert_id, json.dumps(document, sort_keys=True).encode()
