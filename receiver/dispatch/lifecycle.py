"""Work-item lifecycle beyond Fired/Resolved: flap damping and resolving what Azure never resolves.

The reopen window itself is applied by each backend (it needs the backend's own items); this
module decides, and keeps what must outlive a restart (or a move of the dispatch lease to another
replica) in the inbox's database through a :class:`receiver.storage.lifecycle.LifecycleStore`:

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

A due timer becomes an ordinary inbox row, in the transaction that deletes the timer: a Resolved
the receiver writes itself, with an alert id derived from the timer and a ``secureExportLifecycle``
block (reason, correlation key, note). So it is durable, ordered with the key's other deliveries by
the dispatcher, retried like any delivery, and visible in ``secure-export trace``. The backends
resolve the whole item of that key with the note.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from receiver.alerts.events import LIFECYCLE_KEY, SYNTHETIC_ALERT_PREFIX, AlertEvent, Condition
from receiver.storage.lifecycle import Delivery, LifecycleStore, Timer
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

_FIRING_RETENTION_SECONDS = 30 * 86400.0
"""Alert instances still marked firing after this long are forgotten (their Resolved was lost)."""

_SWEEP_BATCH = 200


def is_stateless(event: AlertEvent) -> bool:
    """Whether Azure never resolves alerts of this event's monitoring service."""
    return (event.monitoring_service or "").casefold() in STATELESS_SERVICES


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Lifecycle:
    """Flap damping and lifecycle timers for one receiver (see the module docstring).

    The dispatcher calls :meth:`before_apply`/:meth:`after_apply` around each backend call and
    starts and stops the sweeper with itself (:meth:`start_sweeping`, :meth:`stop_sweeping`), so
    on PostgreSQL both happen only on the replica holding the dispatch lease.
    """

    def __init__(
        self,
        store: LifecycleStore,
        *,
        reopen_window: float = 3600.0,
        stateless_ttl: float | None = None,
        flap_cycles: int = 3,
        flap_quiet: float = 900.0,
        sweep_interval: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.reopen_window = reopen_window
        self.stateless_ttl = stateless_ttl
        self.flap_cycles = flap_cycles
        self.flap_quiet = flap_quiet
        self.sweep_interval = sweep_interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.resolutions = 0
        """Resolutions the receiver has stored itself (due timers turned into inbox rows)."""

    async def open(self) -> None:
        """Make sure the store's tables exist (the sweeper starts with the dispatcher)."""
        await self.store.open()

    async def close(self) -> None:
        """Stop the sweeper; timers stay in the database for the next start (or the next lease holder)."""
        await self.stop_sweeping()

    async def start_sweeping(self) -> None:
        """Start the sweeper (idempotent): due timers become inbox rows every ``sweep_interval``."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._sweep_loop(), name="lifecycle-sweeper")
            log.info(
                "lifecycle timers swept by this replica",
                extra={"event": "lifecycle_sweeping", "interval_seconds": self.sweep_interval},
            )

    async def stop_sweeping(self) -> None:
        """Stop the sweeper; a sweep cut short rolls back and its timers stay."""
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
        cycles = await self.store.cycles(event.lifecycle_key, event.alert_id, self._clock() - self.reopen_window)
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
        if event.lifecycle_reason is not None or event.recovery:
            await self.store.ended(lifecycle_key)  # the item resolved as a whole
            return
        template = json.dumps(dict(event.essentials), sort_keys=True, default=str)
        if event.condition is Condition.RESOLVED:
            hold = Timer(key, "flap-quiet", now + self.flap_quiet, self.flap_quiet, template) if event.hold else None
            await self.store.resolved(lifecycle_key, event.alert_id, now, hold)
        elif is_stateless(event):
            # Never resolved by Azure: not tracked as firing, never flapping.
            ttl = self.stateless_ttl
            await self.store.fired_stateless(
                key, Timer(key, "stateless-ttl", now + ttl, ttl, template) if ttl else None
            )
        else:
            await self.store.fired(key, lifecycle_key, event.alert_id, now, self.reopen_window)

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
        """Turn every due timer into a stored Resolved; returns how many. Safe to repeat, and to race."""
        now = self._clock()
        await self.store.forget_firing_before(now - _FIRING_RETENTION_SECONDS)

        def delivery(timer: Timer) -> Delivery:
            return synthetic_resolved(
                timer.correlation_key,
                timer.reason,
                timer.due_at,
                timer.after_seconds,
                json.loads(timer.essentials),
                now,
            )

        stored = await self.store.take_due(now, _SWEEP_BATCH, delivery)
        for resolution in stored:
            self.resolutions += resolution.inserted
            log.info(
                "lifecycle resolution stored",
                extra={
                    "event": "lifecycle_resolution",
                    "reason": resolution.timer.reason,
                    "alert_id": resolution.alert_id,
                    "duplicate": not resolution.inserted,
                },
            )
        return len(stored)

    async def pending_timers(self) -> list[dict[str, Any]]:
        """The timers not yet due, for tests and operators: key, reason, due time."""
        return [
            {"correlation_key": t.correlation_key, "reason": t.reason, "due_at": _iso(t.due_at)}
            for t in await self.store.timers()
        ]


def synthetic_resolved(
    key: str, reason: str, due_at: float, after: float, essentials: dict[str, Any], now: float
) -> Delivery:
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
