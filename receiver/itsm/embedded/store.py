"""The embedded ITSM backend: work items and a small CMDB in the receiver's own SQLite file.

Semantics (documented for operators in ``docs/work-items.md``):

* **Fired** opens a work item numbered ``INC0000001``…, or, when an open item with the same
  ``correlation_key`` exists (``SECURE_EXPORT_CORRELATION=rule-target``), adds the alert instance
  to it as one more occurrence.
* **Resolved** marks its alert instance resolved; the work item resolves (``resolved_at`` and a
  note) once every alert instance grouped on it has resolved.
* **Resolved before Fired** (Azure retried the Fired later than the Resolved): the early Resolved
  is remembered; the late Fired then records the alert without leaving anything open — a new
  item is created already ``Resolved`` (so the incident stays visible in the history), or the
  instance joins an open group as already resolved. A Resolved whose Fired never comes leaves
  nothing behind but its ``applied_events`` row.
* **CMDB**: every name in ``configurationItems`` becomes (or matches, case-insensitively) a CI;
  its Azure resource id is the ``alertTargetIDs`` entry whose last path segment is that name.
* **Idempotency**: ``applied_events(alert_id, condition)`` is written in the same transaction as
  the change it records, so replaying an event (the dispatcher does after a crash) changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from receiver.alerts.events import AlertEvent, Condition
from receiver.itsm.base import Backend, PermanentBackendError, Readiness, TransientBackendError, WorkItemRef
from receiver.itsm.embedded import lifecycle
from receiver.storage.sqlite.write_lock import begin_immediate, write_transaction

__all__ = [
    "DEFAULT_PRIORITY_MAP",
    "MISSING_SEVERITY_KEY",
    "DatabaseNotFoundError",
    "EmbeddedBackend",
    "list_configuration_items",
    "list_work_items",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

MISSING_SEVERITY_KEY = "default"
"""Priority-map key used for an alert without severity (cost alerts) or with an unknown one."""

DEFAULT_PRIORITY_MAP: Mapping[str, int] = {
    "Sev0": 1,
    "Sev1": 2,
    "Sev2": 3,
    "Sev3": 4,
    "Sev4": 5,
    MISSING_SEVERITY_KEY: 3,
}
"""Azure severity → work item priority (1 Critical … 5 Planning). No severity → 3 (Moderate)."""

_BUSY_TIMEOUT_MS = 5000

_MAX_BATCH = 256
"""Most jobs the worker takes off its queue at once."""

_MAX_LOCK_HOLD_SECONDS = 0.002
"""A transaction of several events commits once it has held the write lock this long."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS work_items (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    number          TEXT UNIQUE,
    correlation_key TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('New', 'Resolved', 'Closed')),
    severity        TEXT,
    priority        INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 5),
    title           TEXT NOT NULL,
    description     TEXT NOT NULL,
    opened_at       TEXT NOT NULL,
    resolved_at     TEXT,
    occurrences     INTEGER NOT NULL DEFAULT 1,
    closed_at       TEXT,
    assignment_group TEXT,
    category        TEXT,
    subcategory     TEXT,
    impact          INTEGER,
    urgency         INTEGER,
    reopened        INTEGER NOT NULL DEFAULT 0,
    lifecycle_key   TEXT,
    resolved_by     TEXT
);
-- At most one open work item per correlation key: the invariant behind "no duplicate".
CREATE UNIQUE INDEX IF NOT EXISTS work_items_one_open_per_key
    ON work_items (correlation_key) WHERE state = 'New';
CREATE TABLE IF NOT EXISTS work_item_alerts (
    work_item_id INTEGER NOT NULL REFERENCES work_items (id),
    alert_id     TEXT NOT NULL UNIQUE,
    fired_at     TEXT NOT NULL,
    resolved_at  TEXT,
    PRIMARY KEY (work_item_id, alert_id)
);
CREATE TABLE IF NOT EXISTS work_item_notes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    work_item_id INTEGER NOT NULL REFERENCES work_items (id),
    at           TEXT NOT NULL,
    text         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS configuration_items (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT NOT NULL,
    name_key          TEXT NOT NULL UNIQUE,
    azure_resource_id TEXT,
    first_seen        TEXT NOT NULL,
    last_seen         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS work_item_cis (
    work_item_id INTEGER NOT NULL REFERENCES work_items (id),
    ci_id        INTEGER NOT NULL REFERENCES configuration_items (id),
    PRIMARY KEY (work_item_id, ci_id)
);
CREATE TABLE IF NOT EXISTS applied_events (
    alert_id     TEXT NOT NULL,
    condition    TEXT NOT NULL,
    work_item_id INTEGER,
    event_at     TEXT NOT NULL,
    applied_at   TEXT NOT NULL,
    PRIMARY KEY (alert_id, condition)
);
"""


def work_item_number(item_id: int) -> str:
    """The number a work item shows (``INC0000001``); the same rule as the ``printf`` in ``_fired``."""
    return f"INC{item_id:07d}"


_WORK_ITEM_COLUMNS = (
    "id, number, correlation_key, state, severity, priority, title, description, opened_at, resolved_at, occurrences"
)
"""The columns of the first ``work_items`` schema, copied over when an older database is upgraded."""


def upgrade_schema(conn: sqlite3.Connection) -> None:
    """Rebuild a ``work_items`` table of an earlier version (its ``CHECK`` did not allow ``Closed``).

    SQLite cannot alter a constraint; the table is copied into the current shape in one
    transaction (SQLite's documented procedure: new table, copy, drop, rename). Foreign keys must
    not be enforced on ``conn`` meanwhile.
    """
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'work_items'").fetchone()
    if row is None or "'Closed'" in row[0]:
        return
    with write_transaction(conn, _BUSY_TIMEOUT_MS / 1000):
        again = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'work_items'").fetchone()
        if "'Closed'" not in again[0]:
            create = _SCHEMA.split(";", 1)[0].replace("IF NOT EXISTS work_items", "work_items_new")
            conn.execute(create)
            conn.execute(
                f"INSERT INTO work_items_new ({_WORK_ITEM_COLUMNS}) SELECT {_WORK_ITEM_COLUMNS} FROM work_items"
            )
            conn.execute("DROP TABLE work_items")
            conn.execute("ALTER TABLE work_items_new RENAME TO work_items")
            _log.info("work_items table upgraded", extra={"event": "work_items_upgraded"})


class DatabaseNotFoundError(FileNotFoundError):
    """The SQLite file named for reading does not exist (reading never creates one)."""


def _validated_priority_map(priority_map: Mapping[str, int]) -> dict[str, int]:
    allowed = set(DEFAULT_PRIORITY_MAP)
    merged = dict(DEFAULT_PRIORITY_MAP)
    for key, value in priority_map.items():
        if key not in allowed:
            raise ValueError(f"priority map key {key!r} is unknown; use Sev0..Sev4 or {MISSING_SEVERITY_KEY!r}")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise ValueError(f"priority for {key!r} must be an integer 1..5, got {value!r}")
        merged[key] = value
    return merged


def _iso(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z``; naive datetimes (some legacy payloads) are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now() -> str:
    return _iso(datetime.now(UTC))


def _resource_name(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def _match_resource_id(name: str, target_ids: Iterable[str]) -> str | None:
    """The target whose last path segment is ``name`` (or which *is* ``name``), case-insensitively."""
    key = name.casefold()
    for target in target_ids:
        if target.casefold() == key or _resource_name(target).casefold() == key:
            return target
    return None


def _unique_names(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    unique: list[str] = []
    for raw in names:
        name = raw.strip() if isinstance(raw, str) else ""
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            unique.append(name)
    return unique


class EmbeddedBackend(Backend):
    """Work items and CIs in SQLite: the default backend, for local use, tests and small teams.

    All SQLite work runs on one dedicated thread with its own connection (WAL, busy timeout), so
    the event loop never blocks and the inbox writer's connection to the same file can coexist.

    Events that arrive while the thread is busy are **applied together in one transaction**
    (each exactly as it would be alone, in arrival order), and their callers are answered with one
    hop back to the event loop: under load a batch costs one write lock, one commit and one loop
    hop instead of one each per event, and the thread holds Python's GIL for fewer, longer turns.
    Should any event of a batch fail, the batch is rolled back and its events are applied again one
    transaction each, so a failure stays with its own event.
    """

    name = "embedded"

    def __init__(
        self, db_path: str, *, priority_map: Mapping[str, int] | None = None, reopen_window: float = 3600.0
    ) -> None:
        self._db_path = str(db_path)
        self.reopen_window = reopen_window
        """Seconds: a Fired reopens the item of its rule and targets that Azure resolved this recently."""
        self._priority_map = _validated_priority_map(priority_map or {})
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self.transactions = 0
        """Write transactions committed (events applied / transactions = the batching factor)."""

    @property
    def priority_map(self) -> Mapping[str, int]:
        """The effective severity → priority map (defaults merged with the configured one)."""
        return dict(self._priority_map)

    async def start(self) -> None:
        """Open the connection and create the tables if they are missing."""
        await self._run(self._open)

    async def close(self) -> None:
        """Close the connection and stop the worker thread (after the work queued before)."""
        thread = self._thread
        if thread is None:
            return
        await self._run(self._close_connection)
        self._jobs.put(None)
        await asyncio.to_thread(thread.join)
        self._thread = None

    async def readiness(self) -> Readiness:
        """Ready when the database answers a trivial query."""
        try:
            await self._run(lambda: self._connection().execute("SELECT 1").fetchone())
        except Exception as error:  # noqa: BLE001 - any failure means "not ready", with the reason
            return Readiness(False, f"embedded backend database unavailable: {error}")
        return Readiness(True)

    async def apply(self, event: AlertEvent) -> WorkItemRef | None:
        """Apply one Fired or Resolved event in a single transaction; replays change nothing.

        Returns the work item the event was applied to (``None`` for a Resolved that came first).
        """
        item_id = await self._submit(_Job(event, None))
        return WorkItemRef(work_item_number(item_id)) if isinstance(item_id, int) else None

    async def prune_resolved(self, older_than_seconds: float) -> int:
        """Delete Resolved/Closed work items resolved longer ago than that (see ``work_item_ops``)."""
        from receiver.itsm.embedded.operations import prune_resolved

        def prune() -> int:
            with write_transaction(self._writable_connection(), _BUSY_TIMEOUT_MS / 1000) as conn:
                return prune_resolved(conn, older_than_seconds)

        return await self._run(prune)

    # -- thread-side implementation ------------------------------------------------------------

    async def _run(self, fn: Callable[[], _T]) -> _T:
        result: _T = await self._submit(_Job(None, fn))
        return result

    def _submit(self, job: _Job) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        job.loop = loop
        job.future = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="embedded-itsm", daemon=True)
            self._thread.start()
        self._jobs.put(job)
        return job.future

    def _work(self) -> None:
        """The worker thread: take everything queued, apply events in batches, answer in one hop."""
        while True:
            first = self._jobs.get()
            if first is None:
                return
            jobs = [first]
            stop = False
            while len(jobs) < _MAX_BATCH:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            events: list[_Job] = []
            for job in jobs:
                if job.fn is None:
                    events.append(job)
                    continue
                if events:  # keep the order of calls and events
                    self._apply_batch(events)
                    events = []
                try:
                    job.result = job.fn()
                except BaseException as error:  # noqa: BLE001 - handed to the caller
                    job.error = error
            if events:
                self._apply_batch(events)
            _answer(jobs)
            if stop:
                return

    def _open(self) -> None:
        if self._conn is not None:
            return
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self._db_path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is enough (and ~10x faster than FULL here): the work item's WAL frames
            # precede the inbox's "done" commit in the same WAL file, and the inbox commits with
            # synchronous=FULL, whose fsync makes them durable together. Power loss before that
            # loses both, and the row is replayed (idempotently).
            conn.execute("PRAGMA synchronous = NORMAL")
            upgrade_schema(conn)  # before foreign keys are enforced: it may rebuild work_items
            conn.execute("PRAGMA foreign_keys = ON")
            conn.executescript(_SCHEMA)
            lifecycle.ensure_columns(conn)
        except sqlite3.OperationalError as error:
            if conn is not None:
                conn.close()
            if "locked" in str(error) or "busy" in str(error):
                raise TransientBackendError(f"embedded backend database is busy: {error}") from error
            raise PermanentBackendError(
                f"cannot open the embedded backend database {self._db_path!r}: {error}; "
                "check SECURE_EXPORT_DB points to a writable file"
            ) from error
        # Write locks are taken by _begin(), which polls; SQLite's busy handler would sleep longer.
        conn.execute("PRAGMA busy_timeout = 0")
        conn.row_factory = sqlite3.Row
        self._conn = conn

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._open()
        assert self._conn is not None
        return self._conn

    def _apply_batch(self, jobs: list[_Job]) -> None:
        """Apply the jobs' events in as few transactions as the lock-hold limit allows.

        A transaction is committed once it has held the write lock for
        :data:`_MAX_LOCK_HOLD_SECONDS`, so the inbox writer (whose commits the HTTP answers wait
        for) is never shut out for long; a busy event loop can make each statement of this
        thread wait for the GIL. Should an event fail, its transaction is rolled back and the
        events it held are applied again one transaction each, so the failure stays with its event.
        """
        pending = jobs
        while pending:
            try:
                conn = self._writable_connection()
                self._begin(conn)
            except BaseException as error:  # noqa: BLE001 - every event still waiting gets it
                for job in pending:
                    job.error = error
                return
            began = time.monotonic()
            outcomes: list[tuple[str, int | None]] = []
            try:
                for job in pending:
                    assert job.event is not None
                    outcomes.append(self._apply_in_transaction(conn, job.event))
                    if time.monotonic() - began >= _MAX_LOCK_HOLD_SECONDS:
                        break
                conn.execute("COMMIT")
            except BaseException:  # noqa: BLE001 - redone below, one event at a time
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                tried, pending = pending[: len(outcomes) + 1], pending[len(outcomes) + 1 :]
                for job in tried:
                    try:
                        assert job.event is not None
                        outcome, job.result = self._apply_sync(job.event)
                        _log_applied(job.event, outcome)
                    except BaseException as error:  # noqa: BLE001 - handed to that event's caller
                        job.error = error
                continue
            self.transactions += 1
            for job, (outcome, item_id) in zip(pending, outcomes, strict=False):
                assert job.event is not None
                job.result = item_id
                _log_applied(job.event, outcome)
            pending = pending[len(outcomes) :]

    def _writable_connection(self) -> sqlite3.Connection:
        try:
            return self._connection()
        except PermanentBackendError as error:
            # start() already succeeded once or will be retried by the dispatcher; a file that
            # cannot be opened now (disk full, volume remounting) is worth retrying, not parking.
            raise TransientBackendError(str(error)) from error

    def _begin(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, polling while the inbox writer holds the lock (see :func:`begin_immediate`)."""
        try:
            begin_immediate(conn, _BUSY_TIMEOUT_MS / 1000)
        except sqlite3.OperationalError as error:
            raise TransientBackendError(f"embedded backend database is busy: {error}") from error

    def _apply_sync(self, event: AlertEvent) -> tuple[str, int | None]:
        conn = self._writable_connection()
        self._begin(conn)
        try:
            outcome = self._apply_in_transaction(conn, event)
            conn.execute("COMMIT")
        except BaseException as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(error, sqlite3.OperationalError):
                raise TransientBackendError(f"embedded backend write failed: {error}") from error
            raise
        self.transactions += 1
        return outcome

    def _apply_in_transaction(self, conn: sqlite3.Connection, event: AlertEvent) -> tuple[str, int | None]:
        """Apply ``event``; returns what happened and the work item it touched (if any)."""
        condition = Condition(event.condition)
        # Both conditions in one read (each statement is a GIL round trip for this thread): this
        # one's row means a replay; a Fired also needs to know whether its Resolved came first.
        rows = conn.execute(
            "SELECT condition, event_at, work_item_id FROM applied_events WHERE alert_id = ?", (event.alert_id,)
        ).fetchall()
        applied = {row[0]: row[1] for row in rows}
        if condition.value in applied:
            earlier = next(row[2] for row in rows if row[0] == condition.value)
            return "replay ignored", earlier
        work_item_id: int | None
        if condition is Condition.FIRED:
            event_at = _iso(event.fired_at) if event.fired_at else _now()
            if event.recovery:
                work_item_id, outcome = self._resolve_for(conn, event, "lifecycle_key", event.lifecycle_key, event_at)
            else:
                work_item_id, outcome = self._fired(conn, event, event_at, applied.get(Condition.RESOLVED.value))
        else:
            event_at = _iso(event.resolved_at) if event.resolved_at else _now()
            if event.lifecycle_reason is not None:
                work_item_id, outcome = self._resolve_for(
                    conn, event, "correlation_key", event.correlation_key, event_at
                )
            else:
                work_item_id, outcome = self._resolved(conn, event, event_at)
        ci_ids = self._bind_cis(conn, event, event_at)
        if work_item_id is not None:
            conn.executemany(
                "INSERT OR IGNORE INTO work_item_cis (work_item_id, ci_id) VALUES (?, ?)",
                [(work_item_id, ci_id) for ci_id in ci_ids],
            )
        conn.execute(
            "INSERT INTO applied_events (alert_id, condition, work_item_id, event_at, applied_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (event.alert_id, condition.value, work_item_id, event_at, _now()),
        )
        return outcome, work_item_id

    def _fired(
        self, conn: sqlite3.Connection, event: AlertEvent, fired_at: str, early_resolved_at: str | None
    ) -> tuple[int, str]:
        """Open a work item or add an occurrence; ``early_resolved_at`` is a Resolved applied before."""
        open_item = conn.execute(
            "SELECT id FROM work_items WHERE correlation_key = ? AND state = 'New'",
            (event.correlation_key,),
        ).fetchone()
        if open_item is not None:
            item_id = int(open_item["id"])
            conn.execute(
                "INSERT INTO work_item_alerts (work_item_id, alert_id, fired_at, resolved_at) VALUES (?, ?, ?, ?)",
                (item_id, event.alert_id, fired_at, early_resolved_at),
            )
            conn.execute("UPDATE work_items SET occurrences = occurrences + 1 WHERE id = ?", (item_id,))
            text = f"New occurrence: alert {event.alert_id} fired at {fired_at}."
            if early_resolved_at:
                text += f" Its Resolved ({early_resolved_at}) arrived first, so it does not keep this item open."
            self._note(conn, item_id, text)
            return item_id, "occurrence added"

        previous = lifecycle.previous_item(conn, event)
        if not early_resolved_at and lifecycle.held_open(conn, previous):
            assert previous is not None
            lifecycle.join_held(conn, previous, event, fired_at)
            self._note(conn, int(previous["id"]), f"Fired again while flapping: alert {event.alert_id} at {fired_at}.")
            return int(previous["id"]), "occurrence added (flapping)"
        if not early_resolved_at and lifecycle.reopenable(conn, previous, fired_at, self.reopen_window):
            assert previous is not None
            self._note(conn, int(previous["id"]), lifecycle.reopen(conn, previous, event, fired_at, self.reopen_window))
            return int(previous["id"]), "reopened"
        state, resolved_at = ("Resolved", early_resolved_at) if early_resolved_at else ("New", None)
        routed = lifecycle.routed_values(event)
        cursor = conn.execute(
            "INSERT INTO work_items (correlation_key, state, severity, priority, title, description,"
            " opened_at, resolved_at, occurrences, assignment_group, category, subcategory, impact, urgency,"
            " lifecycle_key, resolved_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.correlation_key,
                state,
                event.severity,
                lifecycle.routed_priority(event, self._priority(event.severity)),
                _title(event),
                _description(event),
                fired_at,
                resolved_at,
                routed["assignment_group"],
                routed["category"],
                routed["subcategory"],
                routed["impact"],
                routed["urgency"],
                event.lifecycle_key or None,
                "azure" if early_resolved_at else None,
            ),
        )
        item_id = int(cursor.lastrowid or 0)
        conn.execute("UPDATE work_items SET number = printf('INC%07d', id) WHERE id = ?", (item_id,))
        conn.execute(
            "INSERT INTO work_item_alerts (work_item_id, alert_id, fired_at, resolved_at) VALUES (?, ?, ?, ?)",
            (item_id, event.alert_id, fired_at, early_resolved_at),
        )
        self._note(conn, item_id, f"Opened by Azure Monitor: alert {event.alert_id} fired at {fired_at}.")
        if event.route is not None and event.route.assignment_group:
            self._note(
                conn, item_id, f"Routed to {event.route.assignment_group} by {event.route.rule} of the routing file."
            )
        follows = lifecycle.not_reopened_note(previous)
        if follows:
            self._note(conn, item_id, follows)
        if early_resolved_at:
            self._note(
                conn,
                item_id,
                f"Resolved at once: Azure's Resolved ({early_resolved_at}) arrived before this Fired "
                "(deliveries were retried out of order).",
            )
            return item_id, "created already resolved"
        return item_id, "created"

    def _resolved(self, conn: sqlite3.Connection, event: AlertEvent, resolved_at: str) -> tuple[int | None, str]:
        instance = conn.execute(
            "SELECT a.work_item_id, a.resolved_at, w.state FROM work_item_alerts a"
            " JOIN work_items w ON w.id = a.work_item_id WHERE a.alert_id = ?",
            (event.alert_id,),
        ).fetchone()
        if instance is None:
            # Unknown alert, or Resolved overtook its Fired: remembered in applied_events so a
            # late Fired finds it; nothing is opened.
            return None, "resolved before fired (remembered)"
        item_id = int(instance["work_item_id"])
        conn.execute(
            "UPDATE work_item_alerts SET resolved_at = ? WHERE alert_id = ? AND resolved_at IS NULL",
            (resolved_at, event.alert_id),
        )
        if instance["state"] != "New":
            return item_id, "already resolved"
        still_firing = conn.execute(
            "SELECT COUNT(*) FROM work_item_alerts WHERE work_item_id = ? AND resolved_at IS NULL",
            (item_id,),
        ).fetchone()[0]
        if still_firing:
            self._note(
                conn,
                item_id,
                f"Alert {event.alert_id} resolved at {resolved_at}; {still_firing} grouped alert(s) still firing.",
            )
            return item_id, "instance resolved"
        if event.hold:
            self._note(conn, item_id, event.hold)
            return item_id, "held (flapping)"
        conn.execute(
            "UPDATE work_items SET state = 'Resolved', resolved_at = ?, resolved_by = 'azure' WHERE id = ?",
            (resolved_at, item_id),
        )
        self._note(conn, item_id, f"Resolved by Azure Monitor: alert {event.alert_id} resolved at {resolved_at}.")
        return item_id, "resolved"

    def _resolve_for(
        self, conn: sqlite3.Connection, event: AlertEvent, column: str, key: str, at: str
    ) -> tuple[int | None, str]:
        """A resolution of the whole open item of ``key``: a recovery, or one the receiver made."""
        item_id = lifecycle.open_item_for(conn, column, key) if key else None
        if item_id is None:
            return None, "nothing open to resolve"
        by = "azure" if event.recovery else "receiver"
        lifecycle.resolve_whole_item(conn, item_id, at, by)
        self._note(
            conn,
            item_id,
            lifecycle.recovery_note(event)
            if event.recovery
            else (event.lifecycle_note or f"Resolved by secure-export ({event.lifecycle_reason})."),
        )
        return item_id, "resolved"

    def _bind_cis(self, conn: sqlite3.Connection, event: AlertEvent, seen_at: str) -> list[int]:
        ci_ids: list[int] = []
        for name in _unique_names(event.configuration_items):
            resource_id = _match_resource_id(name, event.target_ids)
            existing = conn.execute(
                "SELECT id FROM configuration_items WHERE name_key = ?", (name.casefold(),)
            ).fetchone()
            if existing is None:
                cursor = conn.execute(
                    "INSERT INTO configuration_items (name, name_key, azure_resource_id, first_seen, last_seen)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, name.casefold(), resource_id, seen_at, seen_at),
                )
                ci_ids.append(int(cursor.lastrowid or 0))
                continue
            ci_id = int(existing["id"])
            # Out-of-order deliveries must not move first_seen later or last_seen earlier; a
            # known resource id is kept (names are matched, ids only ever fill a gap).
            conn.execute(
                "UPDATE configuration_items SET"
                " first_seen = MIN(first_seen, ?), last_seen = MAX(last_seen, ?),"
                " azure_resource_id = COALESCE(azure_resource_id, ?) WHERE id = ?",
                (seen_at, seen_at, resource_id, ci_id),
            )
            ci_ids.append(ci_id)
        return ci_ids

    def _note(self, conn: sqlite3.Connection, item_id: int, text: str) -> None:
        conn.execute("INSERT INTO work_item_notes (work_item_id, at, text) VALUES (?, ?, ?)", (item_id, _now(), text))

    def _priority(self, severity: str | None) -> int:
        return self._priority_map.get(severity or "", self._priority_map[MISSING_SEVERITY_KEY])


class _Job:
    """One unit of work for the worker thread: an event to apply, or a call to run."""

    __slots__ = ("event", "fn", "loop", "future", "result", "error")

    def __init__(self, event: AlertEvent | None, fn: Callable[[], Any] | None) -> None:
        self.event = event
        self.fn = fn
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[Any] | None = None
        self.result: Any = None
        self.error: BaseException | None = None


def _answer(jobs: list[_Job]) -> None:
    """Hand the results to their callers with one hop per event loop (normally exactly one)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
    for job in jobs:
        assert job.loop is not None
        by_loop.setdefault(job.loop, []).append(job)
    for loop, its_jobs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, its_jobs)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass


def _settle(jobs: list[_Job]) -> None:
    for job in jobs:
        future = job.future
        if future is None or future.done():  # the caller gave up (timeout, cancellation)
            continue
        if job.error is None:
            future.set_result(job.result)
        else:
            future.set_exception(job.error)


def _log_applied(event: AlertEvent, outcome: str) -> None:
    # DEBUG, not INFO: the applied_events row is the durable record of every applied event, and a
    # log line per alert would cost the dispatcher a noticeable share of its CPU.
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug(
            "work item event applied",
            extra={
                "event": "work_item_applied",
                "alert_id": event.alert_id,
                "condition": str(event.condition),
                "outcome": outcome,
            },
        )


def _title(event: AlertEvent) -> str:
    rule = event.rule or "Unnamed alert rule"
    # Name what is affected: the CIs, else the first target if it is a resource (a bare
    # subscription id, as service health sends, says nothing to a person).
    targets = _unique_names(event.configuration_items) or [
        _resource_name(t) for t in event.target_ids[:1] if "/providers/" in t.lower()
    ]
    on = f" on {', '.join(targets[:3])}" if targets else ""
    return f"[{event.severity or 'No severity'}] {rule}{on}"


def _description(event: AlertEvent) -> str:
    lines = [
        f"Azure Monitor alert rule {event.rule or '(unnamed)'} fired.",
        f"Severity: {event.severity or 'none sent by Azure'}",
        f"Signal: {event.signal_type or 'unknown'} ({event.monitoring_service or 'unknown service'})",
    ]
    if event.condition_summary:
        lines.append(f"Condition: {event.condition_summary}")
    if event.target_ids:
        lines.append("Target resource(s):")
        lines.extend(f"  {target}" for target in event.target_ids)
    else:
        lines.append("Target resource(s): none sent by Azure")
    if event.configuration_items:
        lines.append(f"Configuration items: {', '.join(_unique_names(event.configuration_items))}")
    if event.description:
        lines.append(f"Rule description: {event.description}")
    if event.investigation_link:
        lines.append(f"Investigation link: {event.investigation_link}")
    else:
        lines.append("Investigation link: none sent by Azure; find the alert in Azure Monitor by its id.")
    lines.append(f"Alert id: {event.alert_id}")
    return "\n".join(lines)


# -- read side (the CLI) -------------------------------------------------------------------------


def _open_for_reading(db_path: str) -> sqlite3.Connection:
    if not os.path.isfile(db_path):
        raise DatabaseNotFoundError(f"no database at {db_path!r}")
    uri = Path(db_path).absolute().as_uri()
    try:
        # mode=rw never creates a file, and lets SQLite create the -shm a WAL reader needs.
        conn = sqlite3.connect(f"{uri}?mode=rw", uri=True, timeout=5)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.OperationalError:
        # A copy the operator may only read (another user's file, a read-only mount).
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    return conn


def _has_tables(conn: sqlite3.Connection, *names: str) -> bool:
    found = {
        row[0]
        for row in conn.execute(
            f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({','.join('?' * len(names))})",
            names,
        )
    }
    return found == set(names)


def list_work_items(db_path: str) -> list[dict[str, Any]]:
    """Every work item with the fields of DESIGN.md, oldest first.

    Raises :class:`DatabaseNotFoundError` when ``db_path`` does not exist; a database the
    backend never wrote to (only the inbox) has no work items.
    """
    conn = _open_for_reading(db_path)
    try:
        if not _has_tables(conn, "work_items", "work_item_alerts", "work_item_notes", "work_item_cis"):
            return []
        conn.execute("BEGIN")  # one consistent snapshot across the four tables
        items = conn.execute("SELECT * FROM work_items ORDER BY id").fetchall()
        alerts = _grouped(conn, "SELECT work_item_id, alert_id FROM work_item_alerts ORDER BY fired_at, rowid")
        notes = _grouped(conn, "SELECT work_item_id, at || ' ' || text FROM work_item_notes ORDER BY id")
        cis = _grouped(
            conn,
            "SELECT l.work_item_id, c.name FROM work_item_cis l"
            " JOIN configuration_items c ON c.id = l.ci_id ORDER BY c.id",
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
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
            # A database of an earlier version, not yet opened by a receiver, lacks these columns.
            **{name: row[name] if name in row.keys() else None for name in _ROUTED_FIELDS},
            "reopened": row["reopened"] if "reopened" in row.keys() else 0,
        }
        for row in items
    ]


_ROUTED_FIELDS = ("assignment_group", "category", "subcategory", "impact", "urgency")


def list_configuration_items(db_path: str) -> list[dict[str, Any]]:
    """Every CI with the fields of DESIGN.md, in order of first binding.

    Raises :class:`DatabaseNotFoundError` when ``db_path`` does not exist.
    """
    conn = _open_for_reading(db_path)
    try:
        if not _has_tables(conn, "configuration_items"):
            return []
        rows = conn.execute(
            "SELECT id, name, azure_resource_id, first_seen, last_seen FROM configuration_items ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [dict(row) for row in rows]


def _grouped(conn: sqlite3.Connection, query: str) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for key, value in conn.execute(query):
        grouped.setdefault(int(key), []).append(value)
    return grouped
