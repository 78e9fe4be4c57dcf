"""The dispatcher: applies inbox rows to the ITSM backend, in order per correlation key, with retry.

Backoff, parking, pausing while the backend is not ready: docs/internals.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from receiver.alerts.events import AlertEvent, UnusableRow, event_from_alert, event_from_body
from receiver.dispatch.routing import EMPTY_ROUTING, route_event
from receiver.itsm.base import Backend, PermanentBackendError, TransientBackendError
from receiver.storage import InboxStore
from receiver.storage.records import InboxRow, WorkItemRef

if TYPE_CHECKING:
    from secure_export.routing import RoutingFile

log = logging.getLogger(__name__)

_LOAD_BATCH = 500

_BUSY_PUTS = 40
"""Deliveries waiting for an inbox commit at which backend calls hold back (see _let_deliveries_first)."""
_YIELD_STEP_SECONDS = 0.01
_MAX_YIELD_SECONDS = 0.25
_STOP = None


@dataclass(slots=True)
class _KeyedRow:
    """An inbox row waiting in its correlation key's queue, with its event (or why it has none)."""

    row_id: int
    alert_id: str
    condition: str
    key: str
    event: AlertEvent | None
    problem: str | None
    attempts: int
    not_before: float


class Dispatcher:
    """Applies pending inbox rows to a backend; see the module docstring for the guarantees."""

    def __init__(
        self,
        inbox: InboxStore,
        backend: Backend,
        *,
        correlation: str = "alert",
        max_attempts: int = 15,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        concurrency: int = 8,
        apply_timeout: float = 30.0,
        max_in_memory: int = 10_000,
        pause_recheck: float = 10.0,
        metrics: Any = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        routing: RoutingFile | None = None,
        lifecycle: Any = None,
    ) -> None:
        self.inbox = inbox
        self.routing = routing if routing is not None else EMPTY_ROUTING
        """Routing rules (``SECURE_EXPORT_ROUTING``): each event gets its decision before the backend sees it."""
        self.lifecycle = lifecycle
        """A :class:`receiver.dispatch.lifecycle.Lifecycle` told of every applied event (stateless TTL), or None."""
        self.backend = backend
        self.correlation = correlation
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.concurrency = concurrency
        self.apply_timeout = apply_timeout
        self.max_in_memory = max_in_memory
        self.pause_recheck = pause_recheck
        self.metrics = metrics
        self._rng = rng
        self._clock = clock
        self._keys: dict[str, deque[_KeyedRow]] = {}
        self._in_memory = 0
        self._last_id = 0
        self._ready: asyncio.Queue[str | None] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._caught_up = False
        """True while every pending row on disk is in memory: new rows may then come straight in."""
        self._announced_id = 0
        """The highest row id :meth:`notify` was told of (committed), whether or not it was queued."""
        self._timers: set[asyncio.TimerHandle] = set()
        self._confirmations: set[asyncio.Future[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._backend_started = False
        self.backend_error: str | None = None
        """Why the backend could not be started yet (shown by ``/readyz``), or None."""
        self.paused_reason: str | None = None
        """Why dispatching is paused (the backend reported not ready), or None while it runs."""
        self._held: list[str] = []
        """Keys taken off the ready queue while paused; queued again on resume."""
        self._pause_task: asyncio.Task[None] | None = None
        self.pauses = 0
        """How many times dispatching paused for a backend that was not ready."""
        self.applied = 0
        self.failures = 0
        self.parked = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the backend and the workers; pending rows from earlier runs are picked up.

        A :class:`PermanentBackendError` from ``backend.start()`` is raised (bad configuration:
        the receiver must not start). Any other failure is retried in the background while the
        receiver keeps accepting alerts into the inbox.
        """
        await self.start_backend()
        # Started again after stop() (a PostgreSQL replica that lost and regained the dispatch
        # lease): what was in memory may have been applied by another replica meanwhile, so
        # everything is read afresh from the inbox.
        self._keys.clear()
        self._in_memory = 0
        self._last_id = 0
        self._announced_id = 0
        self._caught_up = False
        self._ready = asyncio.Queue()
        self._held.clear()
        self.paused_reason = None
        self._stopping = False
        self._wake.set()
        self._tasks.append(asyncio.create_task(self._run_loader(), name="dispatch-loader"))
        for number in range(self.concurrency):
            self._tasks.append(asyncio.create_task(self._run_worker(), name=f"dispatch-worker-{number}"))

    async def start_backend(self) -> None:
        """Start the backend once, without dispatching (a standby replica's readiness needs it).

        Raises :class:`PermanentBackendError`; another failure is kept in ``backend_error`` and
        retried by the loader once dispatching runs.
        """
        if self._backend_started:
            return
        try:
            await self.backend.start()
            self._backend_started = True
            self.backend_error = None
        except PermanentBackendError:
            raise
        except Exception as error:  # noqa: BLE001 - transient: retried by the loader
            self.backend_error = f"backend did not start: {error}"
            log.warning("backend start failed; retrying", extra={"event": "backend_start_failed", "error": str(error)})

    def notify(self, rows: list[InboxRow] | None = None) -> None:
        """New rows were committed (called on the event loop by the inbox).

        When the dispatcher has caught up with the disk and has room, the rows are queued straight
        from memory; otherwise the loader is woken to read them (in order) from the inbox.
        """
        if rows:
            self._announced_id = max(self._announced_id, max(row.id for row in rows))
        if rows and self._caught_up and not self._stopping:
            for row in rows:
                if row.id > self._last_id:
                    if self._in_memory >= self.max_in_memory:
                        self._caught_up = False  # the rest waits on disk; the loader takes over
                        break
                    self._enqueue(row)
                    self._last_id = row.id
            else:
                return
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work; give backend calls in flight ``grace`` seconds, then cancel them.

        Rows not confirmed by the backend stay pending in the inbox for the next start.
        """
        self._stopping = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._pause_task is not None:
            self._pause_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pause_task
            self._pause_task = None
        self._held.clear()  # their rows stay pending in the inbox
        for _ in range(self.concurrency):
            self._ready.put_nowait(_STOP)
        self._wake.set()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        _, still_running = await asyncio.wait(tasks, timeout=grace)
        for task in still_running:
            task.cancel()
        for task in still_running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._confirmations:
            # Let the inbox commit the confirmations already queued (the writer drains them).
            await asyncio.wait(list(self._confirmations), timeout=max(grace, 1.0))

    @property
    def backend_started(self) -> bool:
        """Whether ``backend.start()`` has succeeded."""
        return self._backend_started

    def take_replayed(self, rows: list[InboxRow]) -> int:
        """Queue rows an operator moved back to pending behind the loader's back; returns how many.

        Rows past the loader's position come in through it anyway; rows already in memory are
        left alone (each row is applied by one owner only).
        """
        if self._stopping:
            return 0
        held = {entry.row_id for queue in self._keys.values() for entry in queue}
        taken = 0
        for row in rows:
            if row.id <= self._last_id and row.id not in held:
                self._enqueue(row)
                taken += 1
        self._wake.set()  # rows past the loader's position (parked in an earlier run) come in through it
        return taken

    @property
    def loaded_up_to(self) -> int:
        """The highest row id the loader has taken into memory."""
        return self._last_id

    def in_memory(self) -> int:
        """Rows loaded and not yet done or parked."""
        return self._in_memory

    # --- loading -----------------------------------------------------------------------------

    async def _run_loader(self) -> None:
        start_attempt = 0
        while not self._stopping:
            if not self._backend_started:
                start_attempt += 1
                if not await self._try_start_backend(start_attempt):
                    continue
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self._load()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - inbox trouble: try again shortly
                log.warning("loading inbox rows failed", extra={"event": "dispatch_load_failed", "error": str(error)})
                await asyncio.sleep(min(self.backoff_cap, max(self.backoff_base, 0.5)))
                self._wake.set()

    async def _try_start_backend(self, attempt: int) -> bool:
        await asyncio.sleep(self.backoff(attempt))
        try:
            await self.backend.start()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - keep trying; /readyz shows why
            self.backend_error = f"backend did not start: {error}"
            log.warning("backend start failed; retrying", extra={"event": "backend_start_failed", "error": str(error)})
            return False
        self._backend_started = True
        self.backend_error = None
        log.info("backend started", extra={"event": "backend_started", "backend": self.backend.name})
        self._wake.set()
        return True

    async def _load(self) -> None:
        while self._in_memory < self.max_in_memory and not self._stopping:
            limit = min(_LOAD_BATCH, self.max_in_memory - self._in_memory)
            rows = await self.inbox.pending(after_id=self._last_id, limit=limit)
            for row in rows:
                if row.id > self._last_id:
                    self._enqueue(row)
                    self._last_id = row.id
            if len(rows) < limit and self._last_id >= self._announced_id:
                # Everything committed before this read is in memory now, and rows committed
                # after it reach notify() after this point (the writer resolves in order).
                self._caught_up = True
                return
            # Either the read was full, or a commit after the read was announced before this
            # resumed: its rows are on disk only. Declaring "caught up" now would let the next
            # announcement move _last_id past them, and they would wait for a restart.
        self._caught_up = False

    def _enqueue(self, row: InboxRow) -> None:
        event: AlertEvent | None
        problem: str | None = None
        try:
            event = route_event(
                self.routing,
                (
                    event_from_alert(row.alert, self.correlation)
                    if row.alert is not None
                    else event_from_body(row.body, self.correlation)
                ),
            )
            key = event.correlation_key
        except UnusableRow as error:
            event, problem, key = None, str(error), row.alert_id
        entry = _KeyedRow(
            row_id=row.id,
            alert_id=row.alert_id,
            condition=row.monitor_condition,
            key=key,
            event=event,
            problem=problem,
            attempts=row.attempts,
            not_before=row.next_attempt_at or 0.0,
        )
        self._in_memory += 1
        queue = self._keys.get(key)
        if queue is not None:
            queue.append(entry)  # the key is already owned by a worker, a timer or the ready queue
            return
        self._keys[key] = deque([entry])
        self._ready.put_nowait(key)

    # --- applying ----------------------------------------------------------------------------

    async def _run_worker(self) -> None:
        while True:
            key = await self._ready.get()
            if key is _STOP or self._stopping:
                return
            queue = self._keys.get(key)
            if not queue:
                self._keys.pop(key, None)
                continue
            if self.paused_reason is not None:
                self._held.append(key)  # no backend call while the backend says it is not ready
                continue
            entry = queue[0]
            wait = entry.not_before - self._clock()
            if wait > 0:
                self._schedule(key, wait)
                continue
            await self._let_deliveries_first()
            finished = await self._attempt(entry)
            if finished:
                queue.popleft()
                self._in_memory -= 1
                if not self._caught_up and self._in_memory < self.max_in_memory // 2:
                    self._wake.set()
                if queue:
                    self._ready.put_nowait(key)
                else:
                    del self._keys[key]
            else:
                self._schedule(key, max(0.0, entry.not_before - self._clock()))

    async def _let_deliveries_first(self) -> None:
        """While a burst of deliveries waits for the inbox, hold back (boundedly) before a backend call.

        Accepting comes first: a delivery Azure does not get its 202 for within 10 s is retried
        and, after a few tries, lost, while a stored alert only waits a little longer for its work
        item. Backend work shares this process's core and GIL (the embedded backend also the
        database's write lock) with the request path, so under a burst each call is deferred up
        to :data:`_MAX_YIELD_SECONDS`; the backlog is then applied in larger, cheaper batches.
        """
        puts_waiting = getattr(self.inbox, "puts_waiting", None)
        if puts_waiting is None:
            return
        waited = 0.0
        while puts_waiting() >= _BUSY_PUTS and waited < _MAX_YIELD_SECONDS and not self._stopping:
            await asyncio.sleep(_YIELD_STEP_SECONDS)
            waited += _YIELD_STEP_SECONDS

    def _schedule(self, key: str, delay: float) -> None:
        if self._stopping:
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def release() -> None:
            self._timers.discard(handle)
            if not self._stopping:
                self._ready.put_nowait(key)

        handle = loop.call_later(delay, release)
        self._timers.add(handle)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based): full jitter, or the backend's ``retry_after``."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.backoff_cap)
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** min(attempt - 1, 60)))
        return float(self._rng() * ceiling)

    async def _attempt(self, entry: _KeyedRow) -> bool:
        """Apply one row once; True when it is finished (done or parked), False to retry later."""
        backend_name = getattr(self.backend, "name", "backend")
        if entry.event is None:
            await self._park(entry, entry.problem or "unusable row", reason="permanent")
            return True
        retry_after: float | None = None
        try:
            # asyncio.timeout, not wait_for: no extra task per call (wait_for wraps the coroutine in one).
            async with asyncio.timeout(self.apply_timeout):
                event = entry.event
                if self.lifecycle is not None:
                    event = await self.lifecycle.before_apply(event)
                applied_to = await self.backend.apply(event)
                if self.lifecycle is not None:
                    # After the backend: a crash in between replays the row, and both steps are idempotent.
                    await self.lifecycle.after_apply(event)
        except asyncio.CancelledError:
            raise
        except PermanentBackendError as error:
            self._count_call(backend_name, "permanent", error)
            entry.attempts += 1
            await self._park(entry, f"permanent backend error: {error}", reason="permanent")
            return True
        except TransientBackendError as error:
            self._count_call(backend_name, "transient", error)
            message = f"transient backend error: {error}"
            retry_after = error.retry_after
        except TimeoutError as error:
            self._count_call(backend_name, "transient", error)
            message = f"backend call timed out after {self.apply_timeout:g}s"
        except Exception as error:  # noqa: BLE001 - a bug must not drop an alert: retried
            self._count_call(backend_name, "transient", error)
            message = f"unexpected backend error: {type(error).__name__}: {error}"
            log.exception(
                "backend raised an unexpected exception",
                extra={"event": "backend_unexpected_error", "alert_id": entry.alert_id, "condition": entry.condition},
            )
        else:
            self._count_call(backend_name, "ok", None)
            self.applied += 1
            try:
                reference = applied_to if isinstance(applied_to, WorkItemRef) else None
                confirmation = self.inbox.mark_done_soon(entry.row_id, reference)
            except Exception as error:  # noqa: BLE001 - applied; a replay after restart is harmless
                self._mark_done_failed(entry.row_id, error)
            else:
                # Not awaited: the next row goes ahead while this confirmation shares a commit.
                self._confirmations.add(confirmation)
                confirmation.add_done_callback(functools.partial(self._confirmed, row_id=entry.row_id))
            return True
        # A transient failure of some kind.
        self.failures += 1
        not_ready = await self._not_ready_reason()
        if not_ready is not None:
            # The backend cannot take work at all (e.g. refused credentials): this attempt says
            # nothing about the row, so it is not counted; the key waits until the backend is ready.
            self._pause(not_ready)
            return False
        entry.attempts += 1
        if entry.attempts >= self.max_attempts:
            await self._park(
                entry, f"gave up after {entry.attempts} attempts; last error: {message}", reason="max_attempts"
            )
            return True
        delay = self.backoff(entry.attempts, retry_after)
        entry.not_before = self._clock() + delay
        log.info(
            "backend apply failed; will retry",
            extra={
                "event": "dispatch_retry",
                "alert_id": entry.alert_id,
                "condition": entry.condition,
                "attempt": entry.attempts,
                "retry_in_seconds": round(delay, 3),
                "error": message,
            },
        )
        try:
            await self.inbox.record_failure(entry.row_id, entry.attempts, message, entry.not_before)
        except Exception as error:  # noqa: BLE001 - the retry goes on; only the stored count lags
            log.warning(
                "could not record a failed attempt", extra={"event": "record_failure_failed", "error": str(error)}
            )
        return False

    async def _not_ready_reason(self) -> str | None:
        """Why the backend is not ready, or None when it is (or cannot say: then attempts count)."""
        try:
            async with asyncio.timeout(min(self.apply_timeout, 10.0)):
                readiness = await self.backend.readiness()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - an unanswerable probe must not stall dispatching
            log.warning(
                "backend readiness check failed; the attempt counts",
                extra={"event": "dispatch_readiness_failed", "error": str(error) or type(error).__name__},
            )
            return None
        if readiness.ready:
            return None
        return readiness.reason or "backend reports not ready"

    def _pause(self, reason: str) -> None:
        """Stop calling the backend until its readiness recovers (idempotent while paused)."""
        if self.paused_reason is not None or self._stopping:
            return
        self.paused_reason = reason
        self.pauses += 1
        log.warning(
            "backend not ready; dispatching paused (attempts are not counted meanwhile)",
            extra={"event": "dispatch_paused", "backend": getattr(self.backend, "name", "backend"), "reason": reason},
        )
        self._pause_task = asyncio.create_task(self._wait_until_ready(), name="dispatch-paused")

    async def _wait_until_ready(self) -> None:
        interval = max(0.01, min(self.backoff_cap, self.pause_recheck))
        started = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(interval)
            if await self._not_ready_reason() is None:
                break
        if self._stopping:
            return
        log.info(
            "backend ready again; dispatching resumed",
            extra={
                "event": "dispatch_resumed",
                "backend": getattr(self.backend, "name", "backend"),
                "paused_seconds": round(time.monotonic() - started, 3),
            },
        )
        self.paused_reason = None
        self._pause_task = None
        held, self._held = self._held, []
        for key in held:
            self._ready.put_nowait(key)

    def _confirmed(self, future: asyncio.Future[None], row_id: int) -> None:
        self._confirmations.discard(future)
        if not future.cancelled() and future.exception() is not None:
            self._mark_done_failed(row_id, future.exception())

    @staticmethod
    def _mark_done_failed(row_id: int, error: BaseException | None) -> None:
        log.warning(
            "could not mark an applied row done; it will be replayed (idempotently) after a restart",
            extra={"event": "mark_done_failed", "row_id": row_id, "error": str(error)},
        )

    async def _park(self, entry: _KeyedRow, reason_text: str, *, reason: str) -> None:
        self.parked += 1
        if self.metrics is not None:
            self.metrics.parked.labels(reason=reason).inc()
        log.error(
            "inbox row parked as failed",
            extra={
                "event": "dispatch_parked",
                "alert_id": entry.alert_id,
                "condition": entry.condition,
                "attempts": entry.attempts,
                "reason": reason_text,
            },
        )
        try:
            await self.inbox.park(entry.row_id, max(entry.attempts, 1), reason_text)
        except Exception as error:  # noqa: BLE001 - still pending on disk: retried after a restart
            log.warning("could not park a row", extra={"event": "park_failed", "error": str(error)})

    def _count_call(self, backend_name: str, outcome: str, error: BaseException | None) -> None:
        if self.metrics is None:
            return
        self.metrics.child(self.metrics.backend_calls, backend_name, outcome).inc()
        if error is not None:
            self.metrics.backend_errors.labels(backend=backend_name, kind=type(error).__name__).inc()
