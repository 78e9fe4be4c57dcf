"""The durable inbox on SQLite: one writer thread, group commit, idempotent on (alertId, monitorCondition).

How a commit becomes a 202 and what each table holds: docs/internals.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from receiver.storage.records import InboxOpenError, InboxRow, InboxUnavailable, PutResult, WorkItemRef, iso_at
from receiver.storage.sqlite.connection import connect
from receiver.storage.sqlite.write_lock import begin_immediate, write_transaction
from receiver.storage.sqlite.writer import SQLiteWriter, WriterJob

if TYPE_CHECKING:
    from receiver.alerts.schema import CommonAlert

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY,
    alert_id TEXT NOT NULL,
    monitor_condition TEXT NOT NULL,
    body BLOB NOT NULL,
    received_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'parked', 'discarded')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at REAL,
    done_at TEXT,
    parked_at TEXT,
    work_item TEXT,
    work_item_url TEXT,
    replays INTEGER NOT NULL DEFAULT 0,
    replayed_at TEXT,
    replayed_by TEXT,
    discarded_at TEXT,
    discarded_by TEXT,
    discard_reason TEXT,
    UNIQUE (alert_id, monitor_condition)
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS inbox_parked ON inbox (id) WHERE state = 'parked';
CREATE INDEX IF NOT EXISTS inbox_alert ON inbox (alert_id);
CREATE TABLE IF NOT EXISTS inbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = (
    "id, alert_id, monitor_condition, body, received_at, state, attempts, last_error, next_attempt_at, "
    "done_at, parked_at"
)
"""The columns of the first inbox schema, copied over when an older database is upgraded."""

OPS_GENERATION_KEY = "ops_generation"
"""``inbox_meta`` key bumped by every replay/discard, so a running receiver notices them."""

PRUNE_INTERVAL_SECONDS = 3600.0
"""How often done rows past the retention period are deleted."""

CHECKPOINT_INTERVAL_SECONDS = 0.5
"""How often the checkpointer thread folds the WAL back into the database file."""

_MAX_BATCH = 2048
"""Upper bound of items in one transaction, so one huge burst cannot starve the futures' loop hop."""


def _now_iso() -> str:
    return iso_at(time.time())


def _received_at(cache: list[Any]) -> str:
    """:func:`_now_iso` for the request path: requests in the same millisecond share one string.

    ``cache`` is ``[millisecond, text]``, owned by one :class:`Inbox`.
    """
    now = time.time()
    millisecond = int(now * 1000)
    if millisecond != cache[0]:
        cache[0], cache[1] = millisecond, iso_at(millisecond / 1000)
    return str(cache[1])


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the inbox tables, upgrading a database written by an earlier version in place.

    The first schema's ``CHECK`` on ``state`` did not allow ``discarded`` and SQLite cannot alter a
    constraint, so such a table is rebuilt (copied into the current shape) in one transaction.
    """
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'inbox'").fetchone()
    if row is not None and "'discarded'" not in row[0]:
        with write_transaction(conn, 10.0):
            again = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'inbox'").fetchone()
            if "'discarded'" not in again[0]:
                conn.execute("ALTER TABLE inbox RENAME TO inbox_v1")
                conn.execute(_SCHEMA.strip().rstrip(";"))
                conn.execute(f"INSERT INTO inbox ({_COLUMNS}) SELECT {_COLUMNS} FROM inbox_v1")
                conn.execute("DROP TABLE inbox_v1")
                log.info("inbox table upgraded", extra={"event": "inbox_upgraded"})
    conn.executescript(_SCHEMA + _INDEXES)


# --- work items for the writer thread ------------------------------------------------------


class _InboxJob(WriterJob[Any]):
    """One unit of work for the writer: runs inside the batch's transaction."""

    __slots__ = ()


class _PutJob(_InboxJob):
    """A new delivery; the writer inserts all puts of a batch with one statement."""

    __slots__ = ("alert_id", "condition", "body", "received_at", "alert")

    def __init__(self, alert_id: str, condition: str, body: bytes, alert: CommonAlert | None, received_at: str) -> None:
        super().__init__()
        self.alert_id = alert_id
        self.condition = condition
        self.body = body
        self.alert = alert
        self.received_at = received_at


class _DoneJob(_InboxJob):
    """A row the backend confirmed; all of a batch are marked with one statement."""

    __slots__ = ("row_id", "work_item")

    def __init__(self, row_id: int, work_item: WorkItemRef | None = None) -> None:
        super().__init__()
        self.row_id = row_id
        self.work_item = work_item


class _StatementJob(_InboxJob):
    """Any other statement(s): dispatcher bookkeeping, reads, the readiness probe (a savepoint each)."""

    __slots__ = ("fn", "rows")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        super().__init__()
        self.fn = fn
        self.rows: list[InboxRow] = []
        """Deliveries ``fn`` stored with :meth:`Inbox.insert_in_transaction` (handed over at the commit)."""


class Inbox:
    """Durable, idempotent store of accepted alerts with a group-committing writer thread.

    ``open()`` creates the tables and starts the writer; ``close()`` drains what is queued and
    stops it. All public coroutines must be awaited on the loop that called ``open()``.
    """

    def __init__(
        self,
        db_path: str,
        *,
        busy_timeout: float = 1.0,
        on_committed: Callable[[list[InboxRow]], None] | None = None,
        retention_seconds: float | None = None,
        discarded_retention_seconds: float | None = None,
    ) -> None:
        self.db_path = str(db_path)
        self.busy_timeout = busy_timeout
        self.retention_seconds = retention_seconds
        """Done rows older than this are deleted (parked and pending rows never); None keeps all."""
        self.discarded_retention_seconds = discarded_retention_seconds
        """Discarded rows older than this (since discarding) are deleted; None keeps all."""
        self._pruner: asyncio.Task[None] | None = None
        self.pruned = 0
        self._on_committed = on_committed
        self._writer: SQLiteWriter[_InboxJob] = SQLiteWriter(
            "inbox-writer", self._connect, self._commit, max_batch=_MAX_BATCH, settle=self._settle
        )
        self._writing = False
        self._checkpoints: threading.Event | None = None
        self._checkpointer: threading.Thread | None = None
        self._clock_cache: list[Any] = [-1, ""]
        self._puts_waiting = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._depth = 0
        self._parked = 0
        self._closed = True
        self.commits = 0
        """Transactions committed (each one fsync); with ``rows_written`` shows the group-commit factor."""
        self.rows_written = 0
        self.write_failures = 0
        self.lock_waits = 0
        """Transactions that had to wait for another connection's write lock."""
        self.lock_wait_seconds = 0.0
        self._op_rows: list[InboxRow] = []
        """Rows the running operation stored with :meth:`insert_in_transaction` (writer thread only)."""

    # --- lifecycle ---------------------------------------------------------------------------

    def set_on_committed(self, callback: Callable[[list[InboxRow]], None] | None) -> None:
        """Call ``callback(new_rows)`` on the event loop after a commit that inserted rows.

        Handing the rows over in memory spares the dispatcher a read of what was just written.
        """
        self._on_committed = callback

    async def open(self) -> None:
        """Create the database and tables if needed and start the writer thread."""
        self._loop = asyncio.get_running_loop()
        try:
            await self._writer.call(self._count)
        except Exception as error:
            await self._writer.stop()
            raise InboxOpenError(
                f"cannot open the SQLite database {self.db_path!r} (SECURE_EXPORT_DB): {error}; it must be a "
                "SQLite file (or a new file's name) in a directory the receiver's user can write"
            ) from None
        self._closed = False
        self._writing = True
        self._checkpoints = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, args=(self._checkpoints,), name="inbox-checkpointer", daemon=True
        )
        self._checkpointer.start()
        if self.retention_seconds is not None or self.discarded_retention_seconds is not None:
            self._pruner = asyncio.create_task(self._prune_loop(), name="inbox-pruner")

    async def close(self) -> None:
        """Finish everything queued, then stop the writer and close the connection."""
        if self._closed:
            return
        self._closed = True
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        await self._writer.stop()
        self._writing = False
        if self._checkpoints is not None and self._checkpointer is not None:
            self._checkpoints.set()
            await asyncio.to_thread(self._checkpointer.join)
        self._checkpoints = self._checkpointer = None

    # --- request path ------------------------------------------------------------------------

    async def put(
        self,
        alert_id: str,
        monitor_condition: str,
        body: bytes,
        *,
        alert: CommonAlert | None = None,
        timeout: float | None = None,
    ) -> PutResult:
        """Store one delivery durably; returns once committed. Raises :class:`InboxUnavailable`.

        ``alert`` (the parsed alert) is not stored; it rides along to the dispatcher so the body
        is not parsed a second time. With ``timeout``, :class:`TimeoutError` is raised when the
        commit has not happened within that many seconds (the row may still be committed later;
        a repeated delivery then finds it).
        """
        if self._closed:
            raise InboxUnavailable("the inbox is shutting down")
        loop = self._loop
        assert loop is not None
        job = _PutJob(alert_id, monitor_condition, body, alert, _received_at(self._clock_cache))
        self._writer.submit(job)
        future: asyncio.Future[PutResult] = job.future
        self._puts_waiting += 1
        if timeout is None:
            return await future
        # One timer handle on the future itself: cheaper per request than an asyncio.timeout block.
        expiry = loop.call_later(timeout, _expire_future, future, timeout)
        try:
            return await future
        finally:
            expiry.cancel()

    # --- dispatcher API ----------------------------------------------------------------------

    async def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        if not self._writing:
            raise InboxUnavailable("the inbox is closed")
        job = _StatementJob(fn)
        self._writer.submit(job)
        result: _T = await job.future
        return result

    async def run_in_transaction(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn(conn)`` in the writer's next transaction (a savepoint of its own); its result.

        For the receiver's own tables beside the inbox (``receiver.dispatch.lifecycle``): one writer, one lock.
        """
        return await self._call(fn)

    def insert_in_transaction(
        self, conn: sqlite3.Connection, alert_id: str, monitor_condition: str, body: bytes
    ) -> InboxRow | None:
        """Inside ``run_in_transaction``'s ``fn``: store a delivery in that transaction; None if it exists.

        The row commits (or rolls back) with the caller's other statements and then reaches the
        dispatcher like a put's (``on_committed``), so it is counted and applied in id order.
        """
        received_at = _now_iso()
        cur = conn.execute(
            "INSERT INTO inbox (alert_id, monitor_condition, body, received_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (alert_id, monitor_condition) DO NOTHING",
            (alert_id, monitor_condition, body, received_at),
        )
        if cur.rowcount != 1 or cur.lastrowid is None:
            return None
        row = InboxRow(cur.lastrowid, alert_id, monitor_condition, body, received_at, 0, None)
        self._op_rows.append(row)
        return row

    async def pending(self, after_id: int = 0, limit: int = 500) -> list[InboxRow]:
        """Pending rows with ``id > after_id`` in arrival order (at most ``limit``)."""

        def read(conn: sqlite3.Connection) -> list[InboxRow]:
            rows = conn.execute(
                "SELECT id, alert_id, monitor_condition, body, received_at, attempts, next_attempt_at "
                "FROM inbox WHERE state = 'pending' AND id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
            return [InboxRow(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], r[6]) for r in rows]

        return await self._call(read)

    async def replayed(self, up_to_id: int, limit: int = 5000) -> list[InboxRow]:
        """Pending rows an operator replayed, with ``id <= up_to_id`` (the dispatcher's loader is past them)."""

        def read(conn: sqlite3.Connection) -> list[InboxRow]:
            rows = conn.execute(
                "SELECT id, alert_id, monitor_condition, body, received_at, attempts, next_attempt_at "
                "FROM inbox WHERE state = 'pending' AND replays > 0 AND id <= ? ORDER BY id LIMIT ?",
                (up_to_id, limit),
            ).fetchall()
            return [InboxRow(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], r[6]) for r in rows]

        return await self._call(read)

    async def mark_done(self, row_id: int, work_item: WorkItemRef | None = None) -> None:
        """The backend confirmed the row: it leaves the pending set (with what it became, if known)."""
        await self.mark_done_soon(row_id, work_item)

    def mark_done_soon(self, row_id: int, work_item: WorkItemRef | None = None) -> asyncio.Future[None]:
        """Queue :meth:`mark_done` without waiting; the future settles when it is committed.

        The dispatcher moves on to its next row meanwhile, so confirmations of many rows share
        one commit. Losing one in a crash only replays an event the backend already applied.
        """
        if not self._writing:
            raise InboxUnavailable("the inbox is closed")
        job = _DoneJob(row_id, work_item)
        self._writer.submit(job)
        future: asyncio.Future[None] = job.future
        return future

    async def record_failure(self, row_id: int, attempts: int, error: str, next_attempt_at: float | None) -> None:
        """Remember a failed attempt (survives restarts, so the attempt limit does too)."""

        def failed(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE inbox SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE id = ? AND state = 'pending'",
                (attempts, error[:2000], next_attempt_at, row_id),
            )

        await self._call(failed)

    async def park(self, row_id: int, attempts: int, error: str) -> None:
        """Give up on a row: it stays in the database as ``parked``, visible to operators."""

        def park(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE inbox SET state = 'parked', attempts = ?, last_error = ?, parked_at = ? "
                "WHERE id = ? AND state = 'pending'",
                (attempts, error[:2000], _now_iso(), row_id),
            )
            self._depth -= cur.rowcount
            self._parked += cur.rowcount

        await self._call(park)

    async def prune(self, older_than_seconds: float, *, limit: int = 5000) -> int:
        """Delete up to ``limit`` done rows whose backend confirmation is older than the given age.

        Keeping done rows is what makes a late repeated delivery a no-op; Azure stops retrying
        within minutes, so after the retention period their keys and bodies only take space.
        Parked and pending rows are never deleted. Returns the number of rows deleted.
        """
        cutoff = iso_at(time.time() - older_than_seconds)

        def delete(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM inbox WHERE id IN "
                "(SELECT id FROM inbox WHERE state = 'done' AND done_at < ? ORDER BY id LIMIT ?)",
                (cutoff, limit),
            )
            return cur.rowcount

        deleted: int = await self._call(delete)
        self.pruned += deleted
        return deleted

    async def prune_discarded(self, older_than_seconds: float, *, limit: int = 5000) -> int:
        """Delete up to ``limit`` discarded rows whose discarding is older than the given age."""
        cutoff = iso_at(time.time() - older_than_seconds)

        def delete(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM inbox WHERE id IN "
                "(SELECT id FROM inbox WHERE state = 'discarded' AND discarded_at < ? ORDER BY id LIMIT ?)",
                (cutoff, limit),
            )
            return cur.rowcount

        deleted: int = await self._call(delete)
        self.pruned += deleted
        return deleted

    async def recount(self) -> None:
        """Count pending and parked rows again (after an operator replayed or discarded rows)."""

        def count(conn: sqlite3.Connection) -> None:
            with contextlib.suppress(sqlite3.Error):  # the counts stay as they were; the next recount fixes them
                self._count(conn)

        await self._call(count)

    async def _prune_loop(self) -> None:
        periods = [p for p in (self.retention_seconds, self.discarded_retention_seconds) if p is not None]
        interval = min(PRUNE_INTERVAL_SECONDS, max(min(periods) / 10, 1.0))
        while True:
            try:
                while self.retention_seconds is not None and await self.prune(self.retention_seconds) > 0:
                    await asyncio.sleep(0)  # a big backlog goes in slices, between requests
                while (
                    self.discarded_retention_seconds is not None
                    and await self.prune_discarded(self.discarded_retention_seconds) > 0
                ):
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - pruning is housekeeping; try again later
                log.warning("inbox pruning failed", extra={"event": "prune_failed", "error": str(error)})
            await asyncio.sleep(interval)

    async def probe(self) -> None:
        """Prove the inbox is writable now (a committed write); raises :class:`InboxUnavailable`."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO inbox_meta (key, value) VALUES ('probe', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_now_iso(),),
            )

        try:
            await self._call(write)
        except sqlite3.Error as error:
            raise InboxUnavailable(f"inbox database not writable: {error}") from error

    def puts_waiting(self) -> int:
        """Deliveries handed to the writer and not yet answered: how hard callers are pushing now."""
        return self._puts_waiting

    def depth(self) -> int:
        """Rows waiting for the backend."""
        return self._depth

    def parked(self) -> int:
        """Rows parked as failed."""
        return self._parked

    # --- writer thread -----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """The writer's connection (on its thread): schema, no automatic checkpoints, polled lock waits."""
        # The directory is not created here: a mistyped SECURE_EXPORT_DB must not quietly
        # start an empty inbox somewhere else (the settings check it exists).
        conn = connect(self.db_path, busy_timeout=self.busy_timeout)
        try:
            ensure_schema(conn)
            # Checkpoints run on their own thread (below), not inside a request's COMMIT.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            # Lock waits are polled by _begin(); SQLite's escalating sleeps would add latency.
            conn.execute("PRAGMA busy_timeout=0")
        except BaseException:
            conn.close()
            raise
        return conn

    def _count(self, conn: sqlite3.Connection) -> None:
        self._depth = conn.execute("SELECT count(*) FROM inbox WHERE state = 'pending'").fetchone()[0]
        self._parked = conn.execute("SELECT count(*) FROM inbox WHERE state = 'parked'").fetchone()[0]

    def _checkpoint_loop(self, stop: threading.Event) -> None:
        """Copy the WAL back into the database now and then, off the commit path.

        PASSIVE checkpoints never block the writer; one on close leaves a small WAL behind.
        """
        try:
            conn = connect(self.db_path, busy_timeout=self.busy_timeout)
        except sqlite3.Error as error:
            log.warning(
                "inbox checkpointer could not connect", extra={"event": "checkpoint_failed", "error": str(error)}
            )
            return
        try:
            while not stop.wait(CHECKPOINT_INTERVAL_SECONDS):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as error:
                    log.warning("inbox checkpoint failed", extra={"event": "checkpoint_failed", "error": str(error)})
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:
                pass
        finally:
            conn.close()

    def _commit(self, batch: list[_InboxJob]) -> None:
        """On the writer thread: the whole batch in one transaction (that is the group commit)."""
        try:
            conn = self._writer.connection()
        except sqlite3.Error as error:
            self._fail_batch(batch, error)
            return
        try:
            self._commit_on(conn, batch)
        except Exception as error:  # noqa: BLE001 - a bug must not kill the only writer
            log.exception("inbox writer error", extra={"event": "inbox_writer_error"})
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            self._fail_batch(batch, sqlite3.DatabaseError(f"inbox writer error: {error}"))
            try:
                self._count(conn)
            except sqlite3.Error:
                pass

    def _commit_on(self, conn: sqlite3.Connection, batch: list[_InboxJob]) -> None:
        # Few statements per batch, whatever its size: every SQLite call releases and retakes the
        # GIL, and a busy event loop can make each retake wait for a thread switch.
        depth_before, parked_before = self._depth, self._parked
        puts = [job for job in batch if isinstance(job, _PutJob)]
        dones = [job for job in batch if isinstance(job, _DoneJob)]
        statements = [job for job in batch if isinstance(job, _StatementJob)]
        new_rows = 0
        try:
            self._begin(conn)
        except sqlite3.Error as error:
            self._fail_batch(batch, error)
            return
        try:
            if puts:
                new_rows = self._insert(conn, puts)
            if dones:
                ids = [item.row_id for item in dones]
                cur = conn.execute(
                    f"UPDATE inbox SET state = 'done', done_at = ?, last_error = NULL "
                    f"WHERE state = 'pending' AND id IN ({','.join('?' * len(ids))})",
                    (_now_iso(), *ids),
                )
                self._depth -= cur.rowcount
                refs = [(d.work_item.number, d.work_item.url, d.row_id) for d in dones if d.work_item is not None]
                if refs:
                    conn.executemany("UPDATE inbox SET work_item = ?, work_item_url = ? WHERE id = ?", refs)
                for done in dones:
                    done.succeed(None)
            for job in statements:
                # A savepoint per statement job: one failing statement fails only its own caller.
                conn.execute("SAVEPOINT op")
                self._op_rows = []
                try:
                    job.succeed(job.fn(conn))
                except Exception as error:  # noqa: BLE001 - handed to that job's caller
                    conn.execute("ROLLBACK TO op")
                    job.fail(error)
                    self._op_rows = []
                conn.execute("RELEASE op")
                job.rows = self._op_rows
                new_rows += len(self._op_rows)
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._depth, self._parked = depth_before, parked_before
            self._fail_batch(batch, error)
            return
        self._depth += new_rows
        self.commits += 1
        self.rows_written += new_rows

    def _begin(self, conn: sqlite3.Connection) -> None:
        begin_immediate(conn, self.busy_timeout, self._count_lock_wait)

    def _count_lock_wait(self, seconds: float) -> None:
        self.lock_waits += 1
        self.lock_wait_seconds += seconds

    def _insert(self, conn: sqlite3.Connection, puts: Sequence[_PutJob]) -> int:
        """Insert the batch's new deliveries with one statement, mark the rest duplicates; how many are new."""
        firsts: dict[tuple[str, str], _PutJob] = {}
        for item in puts:
            key = (item.alert_id, item.condition)
            if key in firsts:
                item.succeed(PutResult(None, True))  # repeated within this batch
            else:
                firsts[key] = item
        candidates = list(firsts.values())
        existing: set[tuple[str, str]] = set()
        alert_ids = list({item.alert_id for item in candidates})
        for chunk in _chunks(alert_ids, 500):
            # By alert id only: a row-value IN (VALUES ...) would make SQLite scan the whole
            # table; an alert has at most two rows (Fired, Resolved), filtered below.
            existing.update(
                conn.execute(
                    f"SELECT alert_id, monitor_condition FROM inbox WHERE alert_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
            )
        fresh = []
        for item in candidates:
            if (item.alert_id, item.condition) in existing:
                item.succeed(PutResult(None, True))
            else:
                fresh.append(item)
        inserted = 0
        for chunk in _chunks(fresh, 400):
            values = ",".join("(?,?,?,?)" for _ in chunk)
            args = [v for item in chunk for v in (item.alert_id, item.condition, item.body, item.received_at)]
            cur = conn.execute(
                f"INSERT INTO inbox (alert_id, monitor_condition, body, received_at) VALUES {values}", args
            )
            # One statement, one writer: the new rowids are consecutive, ending at lastrowid.
            last = cur.lastrowid
            if last is None or cur.rowcount != len(chunk):
                raise sqlite3.DatabaseError("inbox insert stored fewer rows than sent")
            first = last - len(chunk) + 1
            for offset, item in enumerate(chunk):
                item.succeed(PutResult(first + offset, False))
            inserted += len(chunk)
        return inserted

    def _fail_batch(self, batch: Sequence[_InboxJob], error: sqlite3.Error) -> None:
        """The batch's transaction did not commit: every job fails, a delivery as "answer 503"."""
        self.write_failures += 1
        log.error("inbox write failed", extra={"event": "inbox_write_failed", "error": str(error)})
        for job in batch:
            if isinstance(job, _PutJob):
                job.fail(InboxUnavailable(f"the inbox could not store the alert: {error}"))
            else:
                job.fail(error)

    def _settle(self, batch: list[WriterJob[Any]]) -> None:
        """On the event loop: resolve every caller of the batch at once, then hand over the new rows."""
        new_rows: list[InboxRow] = []
        for job in batch:
            if isinstance(job, _PutJob):
                self._puts_waiting -= 1
                if job.error is None and job.answered:
                    result = job.result
                    if result.row_id is not None and not result.duplicate:
                        new_rows.append(
                            InboxRow(
                                result.row_id,
                                job.alert_id,
                                job.condition,
                                job.body,
                                job.received_at,
                                0,
                                None,
                                job.alert,
                            )
                        )
            elif isinstance(job, _StatementJob) and job.error is None and job.answered:
                new_rows.extend(job.rows)  # after the puts' rows: higher ids
            job.settle()
        if new_rows and self._on_committed is not None:
            self._on_committed(new_rows)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _expire_future(future: asyncio.Future[Any], timeout: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"the inbox did not commit within {timeout:g} s"))


def _open_existing(db_path: str) -> sqlite3.Connection | None:
    if not Path(db_path).exists():
        return None
    conn = connect(db_path, busy_timeout=5.0, readonly=True)
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inbox'").fetchone()
    if not has_table:
        conn.close()
        return None
    return conn


def list_parked(db_path: str) -> list[dict[str, Any]]:
    """Rows parked as failed, oldest first.

    Each has ``id`` (for ``replay``/``discard``), ``alert_id``, ``monitor_condition``, ``attempts``,
    ``last_error``, ``received_at``, ``parked_at``. An absent database or inbox gives ``[]``;
    the file is never created by reading.
    """
    conn = _open_existing(db_path)
    if conn is None:
        return []
    try:
        rows = conn.execute(
            "SELECT id, alert_id, monitor_condition, attempts, last_error, received_at, parked_at "
            "FROM inbox WHERE state = 'parked' ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    keys = ("id", "alert_id", "monitor_condition", "attempts", "last_error", "received_at", "parked_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def count_by_state(db_path: str) -> dict[str, int]:
    """``{"pending": n, "done": n, "parked": n}`` for a database (zeros when absent)."""
    counts = {"pending": 0, "done": 0, "parked": 0}
    conn = _open_existing(db_path)
    if conn is None:
        return counts
    try:
        for state, number in conn.execute("SELECT state, count(*) FROM inbox GROUP BY state"):
            counts[state] = number
    finally:
        conn.close()
    return counts
