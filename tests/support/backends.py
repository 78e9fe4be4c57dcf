"""Backends that stand in for an ITSM tool in tests (see docs/testing.md).

:class:`RecordingBackend` keeps every call in memory; :class:`DurableFakeBackend` survives SIGKILL;
:class:`RefusingBackend` refuses to start; :class:`GatedEmbeddedBackend` holds the embedded backend at
a kill point. The module-level factories are what ``start_receiver(..., subprocess=True, backend=...)``
names, as ``"tests.support.backends:<factory>"``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from receiver.alerts.events import AlertEvent
from receiver.itsm.base import Backend, PermanentBackendError, Readiness, TransientBackendError
from receiver.settings import ReceiverSettings
from receiver.storage.records import WorkItemRef


class RecordingBackend(Backend):
    """In-memory backend for tests: records every call; failures can be scripted.

    ``calls`` lists every ``(alert_id, condition)`` passed to ``apply`` (replays included);
    ``applied`` every one that succeeded, in order, duplicates included (``events`` the matching
    :class:`AlertEvent` objects): a dispatcher that applies a row twice, or replays a Fired after
    its Resolved, shows up there, so tests compare exact sequences. ``fail_transient(n)`` makes the next
    ``n`` calls raise :class:`TransientBackendError`; ``outage()``/``recover()`` fail every call
    in between; ``permanent_for`` holds alert ids refused with :class:`PermanentBackendError`.
    """

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.applied: list[tuple[str, str]] = []
        self.events: list[AlertEvent] = []
        self.permanent_for: set[str] = set()
        self.retry_after: float | None = None
        self.delay = 0.0
        self.ready = True
        self.started = False
        self.closed = False
        self._transient_left = 0
        self._down = False
        self._lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent = 0
        self.in_flight_keys: set[str] = set()
        self.overlapping_key = False

    def fail_transient(self, count: int) -> None:
        """The next ``count`` calls fail with a transient error."""
        with self._lock:
            self._transient_left = count

    def outage(self) -> None:
        """Every call fails (transient) until :meth:`recover`."""
        self._down = True

    def recover(self) -> None:
        """End an outage."""
        self._down = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def readiness(self) -> Readiness:
        return Readiness(self.ready, "" if self.ready else "fake backend told to be unready")

    async def apply(self, event: AlertEvent) -> None:
        key = (event.alert_id, str(event.condition))
        with self._lock:
            self.calls.append(key)
            if event.correlation_key in self.in_flight_keys:
                self.overlapping_key = True
            self.in_flight_keys.add(event.correlation_key)
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if event.alert_id in self.permanent_for:
                raise PermanentBackendError(f"refused by the fake ITSM tool: {event.alert_id}")
            with self._lock:
                failing = self._down or self._transient_left > 0
                if self._transient_left > 0:
                    self._transient_left -= 1
            if failing:
                raise TransientBackendError("fake ITSM tool unavailable", retry_after=self.retry_after)
            with self._lock:
                self.applied.append(key)
                self.events.append(event)
        finally:
            with self._lock:
                self.concurrent -= 1
                self.in_flight_keys.discard(event.correlation_key)


class DurableFakeBackend(Backend):
    """Records applications in its own table of the receiver's SQLite file (survives SIGKILL).

    ``fake_backend_calls`` gets one row per ``apply`` call (replays included);
    ``fake_backend_effects`` one row per distinct ``(alert_id, condition)`` — the "work item"
    whose uniqueness the crash test checks. Both are written in one transaction per call.
    """

    name = "durable-fake"

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self._conn: sqlite3.Connection | None = None
        # One thread owns the connection (as in the embedded backend): the dispatcher's workers
        # call apply() concurrently, and one sqlite3 connection must not run two transactions
        # at once ("cannot start a transaction within a transaction"; worse, a thread holding
        # the GIL can wait for the connection's mutex while another thread on it waits out the
        # busy timeout, stalling the whole receiver for up to 10 s).
        self._executor: ThreadPoolExecutor | None = None

    async def _run(self, fn: Callable[[], Any]) -> Any:
        assert self._executor is not None, "start() the backend first"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    @classmethod
    def from_settings(cls, settings: ReceiverSettings) -> DurableFakeBackend:
        """Factory for ``start_receiver(..., subprocess=True, backend="tests.support.backends:durable_fake")``."""
        return cls(str(settings.db))

    async def start(self) -> None:
        def open_() -> None:
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("CREATE TABLE IF NOT EXISTS fake_backend_calls (alert_id TEXT, condition TEXT)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS fake_backend_effects (alert_id TEXT, condition TEXT, "
                "PRIMARY KEY (alert_id, condition))"
            )
            self._conn = conn

        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-fake")
        await self._run(open_)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def close_() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await asyncio.get_running_loop().run_in_executor(executor, close_)  # after any write in flight
        finally:
            executor.shutdown(wait=False)

    async def apply(self, event: AlertEvent) -> None:
        conn = self._conn
        assert conn is not None

        def write() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO fake_backend_calls VALUES (?, ?)", (event.alert_id, str(event.condition)))
            conn.execute(
                "INSERT INTO fake_backend_effects VALUES (?, ?) ON CONFLICT DO NOTHING",
                (event.alert_id, str(event.condition)),
            )
            conn.execute("COMMIT")

        await self._run(write)


def durable_fake(settings: ReceiverSettings) -> DurableFakeBackend:
    """``"tests.support.backends:durable_fake"``: a :class:`DurableFakeBackend` on the receiver's DB."""
    return DurableFakeBackend.from_settings(settings)


class RefusingBackend(RecordingBackend):
    """A backend whose configuration is wrong: ``start()`` raises :class:`PermanentBackendError`."""

    name = "refusing"

    async def start(self) -> None:
        raise PermanentBackendError("close code 'Nope' is not a valid choice on this instance")


def refusing_backend(settings: ReceiverSettings) -> RefusingBackend:
    """``"tests.support.backends:refusing_backend"``: a backend that refuses to start."""
    return RefusingBackend()


class GatedEmbeddedBackend(Backend):
    """The embedded backend with a kill point the test controls (crash tests).

    The first ``complete`` applications behave normally. Every later one is applied (committed to
    the work-item tables) and then never returns: the dispatcher never confirms its inbox row, so
    the row stays pending although its effect is on disk ("half-applied"), and the rows behind it
    are never attempted. ``complete`` is read from ``<db>.gate`` at start; each half-applied event
    appends its alert id and condition to ``<db>.blocked``, so the test waits for that state (not
    for time to pass) before it sends SIGKILL.
    """

    name = "gated-embedded"

    def __init__(self, db_path: str, complete: int, *, reopen_window: float = 3600.0) -> None:
        from receiver.itsm.embedded.store import EmbeddedBackend

        self._inner = EmbeddedBackend(db_path, reopen_window=reopen_window)
        self._blocked_path = Path(db_path + ".blocked")
        self._complete = complete
        self._applied = 0
        self._never = asyncio.Event()

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    async def apply(self, event: AlertEvent) -> WorkItemRef | None:
        ref = await self._inner.apply(event)
        self._applied += 1
        if self._applied <= self._complete:
            return ref
        with self._blocked_path.open("a") as blocked:
            blocked.write(f"{event.alert_id} {event.condition}\n")
        await self._never.wait()  # applied, never confirmed: SIGKILL comes while this waits
        return ref


def gated_embedded(settings: ReceiverSettings) -> GatedEmbeddedBackend:
    """``"tests.support.backends:gated_embedded"``: see :class:`GatedEmbeddedBackend`."""
    db = str(settings.db)
    # reopen_window as create_backend passes SECURE_EXPORT_REOPEN_WINDOW to the embedded backend
    return GatedEmbeddedBackend(db, int(Path(db + ".gate").read_text()), reopen_window=settings.reopen_window)


def read_blocked(db_path: str | Path) -> list[tuple[str, str]]:
    """``(alert_id, condition)`` of the events a :class:`GatedEmbeddedBackend` half-applied."""
    path = Path(str(db_path) + ".blocked")
    lines = path.read_text().splitlines() if path.exists() else []
    return [(alert, condition) for alert, condition in (line.rsplit(" ", 1) for line in lines)]


def read_durable_fake(db_path: str | Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(calls, effects)`` recorded by :class:`DurableFakeBackend` in ``db_path``."""
    conn = sqlite3.connect(str(db_path), timeout=10)
    try:
        calls = conn.execute("SELECT alert_id, condition FROM fake_backend_calls").fetchall()
        effects = conn.execute("SELECT alert_id, condition FROM fake_backend_effects").fetchall()
    except sqlite3.OperationalError:
        calls, effects = [], []
    finally:
        conn.close()
    return calls, effects
