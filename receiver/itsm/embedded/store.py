"""The embedded ITSM backend on SQLite: work items and a small CMDB in the receiver's own file.

Events are applied on one writer thread (:class:`~receiver.storage.sqlite.writer.SQLiteWriter`),
several to a transaction under load; docs/work-items.md gives the semantics and the batching.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping

from receiver.alerts.events import AlertEvent, Condition
from receiver.itsm.base import Backend, PermanentBackendError, Readiness, TransientBackendError
from receiver.itsm.embedded import lifecycle, lifecycle_rules, render, schema
from receiver.itsm.embedded.applied_log import log_applied
from receiver.itsm.embedded.clock import iso, now
from receiver.itsm.embedded.new_item import NEW_ITEM_COLUMNS, new_item_values
from receiver.itsm.embedded.operations import prune_resolved
from receiver.itsm.embedded.priority import validated_priority_map
from receiver.itsm.embedded.targets import ci_bindings
from receiver.storage.records import WorkItemRef
from receiver.storage.sqlite.connection import connect
from receiver.storage.sqlite.write_lock import begin_immediate, write_transaction
from receiver.storage.sqlite.writer import SQLiteWriter, WriterJob

__all__ = ["EmbeddedBackend"]


_BUSY_TIMEOUT = 5.0
"""Seconds to wait for the write lock the inbox writer holds, before the event is retried later."""

_MAX_BATCH = 256
"""Most jobs the writer thread takes off its queue at once."""

_MAX_LOCK_HOLD_SECONDS = 0.002
"""A transaction of several events commits once it has held the write lock this long."""

_INSERT_ITEM = (
    f"INSERT INTO work_items ({', '.join(NEW_ITEM_COLUMNS)}, lifecycle_key, resolved_by)"
    f" VALUES ({', '.join('?' * (len(NEW_ITEM_COLUMNS) + 2))})"
)


class _EventJob(WriterJob[int | None]):
    """An event to apply; answered with the id of the work item it touched (``None``: none)."""

    __slots__ = ("event",)

    def __init__(self, event: AlertEvent) -> None:
        super().__init__()
        self.event = event


Outcome = tuple[str, int | None]
"""What applying an event did (for the log), and the work item it touched."""


class EmbeddedBackend(Backend):
    """Work items and CIs in SQLite: the default backend, for local use, tests and small teams.

    Events that arrive while the writer thread is busy are applied together in one transaction
    (each exactly as it would be alone, in arrival order). Should one of them fail, the
    transaction is rolled back and its events are applied again one transaction each, so a
    failure stays with its own event.
    """

    name = "embedded"

    def __init__(
        self, db_path: str, *, priority_map: Mapping[str, int] | None = None, reopen_window: float = 3600.0
    ) -> None:
        self._db_path = str(db_path)
        self.reopen_window = reopen_window
        """Seconds: a Fired reopens the item of its rule and targets that Azure resolved this recently."""
        self._priority_map = validated_priority_map(priority_map or {})
        self._writer: SQLiteWriter[_EventJob] = SQLiteWriter(
            "embedded-itsm", self._open, self._apply_batch, max_batch=_MAX_BATCH
        )
        self.transactions = 0
        """Write transactions committed (events applied / transactions = the batching factor)."""

    @property
    def priority_map(self) -> Mapping[str, int]:
        """The effective severity → priority map (defaults merged with the configured one)."""
        return dict(self._priority_map)

    async def start(self) -> None:
        """Open the connection and create the tables if they are missing."""
        await self._writer.call(lambda conn: None)

    async def close(self) -> None:
        """Close the connection and stop the writer thread (after the work queued before)."""
        await self._writer.stop()

    async def readiness(self) -> Readiness:
        """Ready when the database answers a trivial query."""
        try:
            await self._writer.call(lambda conn: conn.execute("SELECT 1").fetchone())
        except Exception as error:  # noqa: BLE001 - any failure means "not ready", with the reason
            return Readiness(False, f"embedded backend database unavailable: {error}")
        return Readiness(True)

    async def apply(self, event: AlertEvent) -> WorkItemRef | None:
        """Apply one Fired or Resolved event in a single transaction; replays change nothing.

        Returns the work item the event was applied to (``None`` for a Resolved that came first).
        """
        job = _EventJob(event)
        self._writer.submit(job)
        item_id = await job.future
        return WorkItemRef(schema.work_item_number(item_id)) if item_id is not None else None

    async def prune_resolved(self, older_than_seconds: float) -> int:
        """Delete Resolved/Closed work items past retention (see :mod:`receiver.itsm.embedded.operations`)."""

        def prune(conn: sqlite3.Connection) -> int:
            with write_transaction(conn, _BUSY_TIMEOUT):
                return prune_resolved(conn, older_than_seconds)

        return await self._writer.call(prune)

    # -- writer thread ---------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = None
        try:
            # synchronous=NORMAL: the work item's WAL frames precede the inbox's "done" commit in
            # the same WAL file, and the inbox commits with synchronous=FULL, whose fsync makes
            # them durable together. Power loss before that loses both, and the row is replayed
            # (idempotently).
            conn = connect(self._db_path, busy_timeout=_BUSY_TIMEOUT, synchronous="NORMAL")
            schema.upgrade_schema(conn)  # before foreign keys are enforced: it may rebuild work_items
            conn.execute("PRAGMA foreign_keys = ON")
            schema.create_tables(conn)
            schema.ensure_columns(conn)
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
        return conn

    def _apply_batch(self, jobs: list[_EventJob]) -> None:
        """Apply the jobs' events in as few transactions as the lock-hold limit allows.

        A transaction is committed once it has held the write lock for
        :data:`_MAX_LOCK_HOLD_SECONDS`, so the inbox writer (whose commits the HTTP answers wait
        for) is never shut out for long. Should an event fail, its transaction is rolled back and
        the events it held are applied again one transaction each.
        """
        pending = jobs
        while pending:
            try:
                conn = self._writable_connection()
                self._begin(conn)
            except BaseException as error:  # noqa: BLE001 - every event still waiting gets it
                for job in pending:
                    job.fail(error)
                return
            began = time.monotonic()
            outcomes: list[Outcome] = []
            try:
                for job in pending:
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
                        outcome, item_id = self._apply_alone(job.event)
                    except BaseException as error:  # noqa: BLE001 - handed to that event's caller
                        job.fail(error)
                    else:
                        job.succeed(item_id)
                        log_applied(job.event, outcome)
                continue
            self.transactions += 1
            for job, (outcome, item_id) in zip(pending, outcomes, strict=False):
                job.succeed(item_id)
                log_applied(job.event, outcome)
            pending = pending[len(outcomes) :]

    def _writable_connection(self) -> sqlite3.Connection:
        try:
            return self._writer.connection()
        except PermanentBackendError as error:
            # start() already succeeded once or will be retried by the dispatcher; a file that
            # cannot be opened now (disk full, volume remounting) is worth retrying, not parking.
            raise TransientBackendError(str(error)) from error

    def _begin(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, polling while the inbox writer holds the lock (see :func:`begin_immediate`)."""
        try:
            begin_immediate(conn, _BUSY_TIMEOUT)
        except sqlite3.OperationalError as error:
            raise TransientBackendError(f"embedded backend database is busy: {error}") from error

    def _apply_alone(self, event: AlertEvent) -> Outcome:
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

    def _apply_in_transaction(self, conn: sqlite3.Connection, event: AlertEvent) -> Outcome:
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
            event_at = iso(event.fired_at) if event.fired_at else now()
            if event.recovery:
                work_item_id, outcome = self._resolve_for(conn, event, "lifecycle_key", event.lifecycle_key, event_at)
            else:
                work_item_id, outcome = self._fired(conn, event, event_at, applied.get(Condition.RESOLVED.value))
        else:
            event_at = iso(event.resolved_at) if event.resolved_at else now()
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
            (event.alert_id, condition.value, work_item_id, event_at, now()),
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
            _note(conn, item_id, render.occurrence_note(event, fired_at, early_resolved_at))
            return item_id, "occurrence added"

        previous = lifecycle.previous_item(conn, event)
        if not early_resolved_at and previous is not None and lifecycle.held_open(conn, previous):
            lifecycle.join_held(conn, previous, event, fired_at)
            _note(conn, int(previous["id"]), render.flapping_note(event, fired_at))
            return int(previous["id"]), "occurrence added (flapping)"
        gap = None if early_resolved_at else lifecycle.reopen_gap(conn, previous, fired_at, self.reopen_window)
        if previous is not None and gap is not None:
            _note(conn, int(previous["id"]), lifecycle.reopen(conn, previous, event, fired_at, gap, self.reopen_window))
            return int(previous["id"]), "reopened"
        cursor = conn.execute(
            _INSERT_ITEM,
            (
                *new_item_values(
                    event, opened_at=fired_at, resolved_first_at=early_resolved_at, priority_map=self._priority_map
                ),
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
        _note(conn, item_id, render.opened_note(event, fired_at))
        for text in (render.routed_note(event), lifecycle_rules.not_reopened_note(previous)):
            if text:
                _note(conn, item_id, text)
        if early_resolved_at:
            _note(conn, item_id, render.resolved_first_note(early_resolved_at))
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
        still_firing = int(
            conn.execute(
                "SELECT COUNT(*) FROM work_item_alerts WHERE work_item_id = ? AND resolved_at IS NULL",
                (item_id,),
            ).fetchone()[0]
        )
        if still_firing:
            _note(conn, item_id, render.still_firing_note(event, resolved_at, still_firing))
            return item_id, "instance resolved"
        if event.hold:
            _note(conn, item_id, event.hold)
            return item_id, "held (flapping)"
        conn.execute(
            "UPDATE work_items SET state = 'Resolved', resolved_at = ?, resolved_by = 'azure' WHERE id = ?",
            (resolved_at, item_id),
        )
        _note(conn, item_id, render.resolved_note(event, resolved_at))
        return item_id, "resolved"

    def _resolve_for(
        self,
        conn: sqlite3.Connection,
        event: AlertEvent,
        column: lifecycle_rules.KeyColumn,
        key: str,
        at: str,
    ) -> tuple[int | None, str]:
        """A resolution of the whole open item of ``key``: a recovery, or one the receiver made."""
        item_id = lifecycle.open_item_for(conn, column, key) if key else None
        if item_id is None:
            return None, "nothing open to resolve"
        lifecycle.resolve_whole_item(conn, item_id, at, "azure" if event.recovery else "receiver")
        _note(conn, item_id, render.receiver_resolution_note(event))
        return item_id, "resolved"

    def _bind_cis(self, conn: sqlite3.Connection, event: AlertEvent, seen_at: str) -> list[int]:
        ci_ids: list[int] = []
        for name, resource_id in ci_bindings(event):
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


def _note(conn: sqlite3.Connection, item_id: int, text: str) -> None:
    conn.execute("INSERT INTO work_item_notes (work_item_id, at, text) VALUES (?, ?, ?)", (item_id, now(), text))
