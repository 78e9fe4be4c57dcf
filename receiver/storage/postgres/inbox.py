"""The inbox on PostgreSQL, shared by every replica: group commit per replica, LISTEN/NOTIFY wake-ups.

docs/postgresql.md describes claims, ordering and losing the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from receiver.storage.postgres.connect import Database, DbAuth, TokenSource, connection_errors, redact
from receiver.storage.postgres.schema import SchemaTooNew, migrate
from receiver.storage.records import InboxOpenError, InboxRow, InboxUnavailable, PutResult, WorkItemRef, iso_at

if TYPE_CHECKING:
    from receiver.alerts.schema import CommonAlert

log = logging.getLogger(__name__)

INSERT_LOCK = 0x5EC0_0002
"""Transaction advisory lock taken by every inserting transaction (commit order = id order)."""
CHANNEL = "secure_export_inbox"
RECOUNT_SECONDS = 5.0
LISTEN_RETRY_SECONDS = 1.0
_MAX_BATCH = 1000
_MAX_PARSED = 10_000
"""Parsed alerts of this replica's own recent rows kept for the dispatcher (spares a second parse)."""
_INSERT = """
WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock($5)),
inserted AS (
    INSERT INTO inbox (alert_id, monitor_condition, body, received_at)
    SELECT u.alert_id, u.condition, u.body, u.received_at
    FROM lock, unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) AS u(alert_id, condition, body, received_at)
    ON CONFLICT ON CONSTRAINT inbox_delivery DO NOTHING
    RETURNING id, alert_id, monitor_condition
),
notified AS MATERIALIZED (
    SELECT pg_notify($6, $7 || max(id)::text) FROM inserted HAVING count(*) > 0
)
SELECT inserted.alert_id, inserted.monitor_condition, inserted.id FROM inserted
UNION ALL
SELECT NULL, NULL, NULL FROM notified
"""
"""A batch of deliveries in one statement: insert-lock, idempotent insert, NOTIFY with the highest id."""
_SELECT_ROW = "SELECT id, alert_id, monitor_condition, body, received_at, attempts, next_attempt_at FROM inbox "


def _row(record: Any) -> InboxRow:
    return InboxRow(record[0], record[1], record[2], bytes(record[3]), record[4], record[5], record[6])


class _Put:
    __slots__ = ("alert_id", "condition", "body", "received_at", "alert", "future")

    def __init__(
        self, alert_id: str, condition: str, body: bytes, alert: CommonAlert | None, future: asyncio.Future[PutResult]
    ) -> None:
        self.alert_id = alert_id
        self.condition = condition
        self.body = body
        self.alert = alert
        self.received_at = iso_at(time.time())
        self.future = future


class PostgresInbox:
    """Durable, idempotent store of accepted alerts in PostgreSQL, shared by replicas."""

    def __init__(
        self,
        url: str,
        *,
        auth: DbAuth | str = "password",
        token_source: TokenSource | None = None,
        busy_timeout: float = 1.0,
        on_committed: Callable[[list[InboxRow]], None] | None = None,
        retention_seconds: float | None = None,
        discarded_retention_seconds: float | None = None,
        pool_size: int = 10,
    ) -> None:
        self.database = Database(url, auth=auth, token_source=token_source)
        self.db_path = redact(url)
        self.busy_timeout = busy_timeout
        self.retention_seconds = retention_seconds
        self.discarded_retention_seconds = discarded_retention_seconds
        self.pool_size = pool_size
        self.replica = secrets.token_hex(6)
        """This process's name in NOTIFY payloads (its own notifications are not echoed to it)."""
        self._on_committed = on_committed
        self._on_remote: Callable[[str], None] | None = None
        self._pool: Any = None
        self._queue: asyncio.Queue[_Put | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: Any = None
        self._puts_waiting = 0
        self._parsed: OrderedDict[int, CommonAlert] = OrderedDict()
        self._done: list[tuple[int, WorkItemRef | None, asyncio.Future[None]]] = []
        self._done_task: asyncio.Task[None] | None = None
        self._depth = 0
        self._parked = 0
        self._closed = True
        self.commits = 0
        self.rows_written = 0
        self.write_failures = 0
        self.lock_waits = 0
        self.lock_wait_seconds = 0.0
        self.pruned = 0
        self.last_error: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def set_on_committed(self, callback: Callable[[list[InboxRow]], None] | None) -> None:
        """``callback(new_rows)`` on the event loop after this replica committed new rows."""
        self._on_committed = callback

    def set_on_remote_commit(self, callback: Callable[[str], None] | None) -> None:
        """``callback(payload)`` when another replica committed rows or an operator changed some.

        The payload is ``"<replica>:<id>"`` for new rows, ``"ops:changed"`` after a replay or
        discard, and ``""`` after the listener (re)connected (anything may have happened meanwhile).
        """
        self._on_remote = callback

    async def open(self) -> None:
        """Connect, migrate the schema (under the migration lock) and start the writer and listener."""
        try:
            self._pool = await self.database.create_pool(min_size=1, max_size=self.pool_size)
            async with self._pool.acquire() as conn:
                await migrate(conn)
            await self._recount()
        except (*connection_errors(), SchemaTooNew) as error:  # type: ignore[misc]  # mypy cannot check a starred tuple of exception types
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            message = (
                f"cannot open the inbox database {self.db_path}: {error or type(error).__name__}; "
                "check SECURE_EXPORT_DB and SECURE_EXPORT_DB_AUTH"
            )
            # Refused credentials, a missing database or role, a newer schema: configuration (serve
            # exits 2). An unreachable server is a failure to start that a restart may cure (exit 1).
            raise (InboxOpenError if _is_configuration(error) else InboxUnavailable)(message) from error
        self._closed = False
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="pg-inbox-writer"),
            asyncio.create_task(self._listen_loop(), name="pg-inbox-listener"),
            asyncio.create_task(self._recount_loop(), name="pg-inbox-recount"),
        ]
        if self.retention_seconds is not None or self.discarded_retention_seconds is not None:
            self._tasks.append(asyncio.create_task(self._prune_loop(), name="pg-inbox-pruner"))

    async def close(self) -> None:
        """Commit what is queued, then stop the tasks and close the pool."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        writer, others = self._tasks[0], self._tasks[1:]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, timeout=max(self.busy_timeout * 5, 5.0))
        for task in others:
            task.cancel()
        for task in others:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._done_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._done_task, timeout=5.0)  # confirmations already queued
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)
            self._listener = None
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), timeout=5)
            self._pool = None

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
        """Store one delivery durably; returns once committed. Raises :class:`InboxUnavailable`."""
        if self._closed:
            raise InboxUnavailable("the inbox is shutting down")
        future: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Put(alert_id, monitor_condition, body, alert, future))
        self._puts_waiting += 1
        try:
            if timeout is None:
                return await asyncio.shield(future)
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            raise TimeoutError(f"the inbox did not commit within {timeout:g} s") from None

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            batch: list[_Put] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    stopping = True
                    continue
                batch.append(item)
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Put]) -> None:
        firsts: dict[tuple[str, str], _Put] = {}
        for item in batch:
            firsts.setdefault((item.alert_id, item.condition), item)
        fresh = list(firsts.values())
        try:
            async with asyncio.timeout(max(self.busy_timeout * 5, 5.0)):
                async with self._pool.acquire() as conn:
                    # One statement, so one round trip and its own transaction: the lock is taken before
                    # any id is drawn and held until the commit, and NOTIFY is delivered at the commit.
                    records = await conn.fetch(
                        _INSERT,
                        [item.alert_id for item in fresh],
                        [item.condition for item in fresh],
                        [item.body for item in fresh],
                        [item.received_at for item in fresh],
                        INSERT_LOCK,
                        CHANNEL,
                        f"{self.replica}:",
                    )
        except connection_errors() as error:
            self.write_failures += 1
            self.last_error = str(error) or type(error).__name__
            log.error("inbox write failed", extra={"event": "inbox_write_failed", "error": self.last_error})
            for item in batch:
                self._puts_waiting -= 1
                if not item.future.done():
                    item.future.set_exception(
                        InboxUnavailable(f"the inbox could not store the alert: {self.last_error}")
                    )
            return
        self.last_error = None
        ids = {(r[0], r[1]): r[2] for r in records if r[2] is not None}
        new_rows: list[InboxRow] = []
        for item in fresh:
            row_id = ids.get((item.alert_id, item.condition))
            if row_id is not None:
                new_rows.append(
                    InboxRow(row_id, item.alert_id, item.condition, item.body, item.received_at, 0, None, item.alert)
                )
        new_rows.sort(key=lambda row: row.id)
        for row in new_rows:
            if row.alert is not None:
                self._parsed[row.id] = row.alert
        while len(self._parsed) > _MAX_PARSED:
            self._parsed.popitem(last=False)
        self.commits += 1
        self.rows_written += len(new_rows)
        self._depth += len(new_rows)
        for item in batch:
            self._puts_waiting -= 1
            if item.future.done():
                continue
            row_id = (
                ids.get((item.alert_id, item.condition)) if firsts[(item.alert_id, item.condition)] is item else None
            )
            item.future.set_result(PutResult(row_id, row_id is None))
        if new_rows and self._on_committed is not None:
            self._on_committed(new_rows)

    # --- dispatcher API ----------------------------------------------------------------------

    async def _run(self, fn: Callable[[Any], Any]) -> Any:
        if self._pool is None:
            raise InboxUnavailable("the inbox is closed")
        try:
            async with self._pool.acquire(timeout=max(self.busy_timeout * 5, 5.0)) as conn:
                return await fn(conn)
        except connection_errors() as error:
            raise InboxUnavailable(f"inbox database unavailable: {error or type(error).__name__}") from error

    async def pending(self, after_id: int = 0, limit: int = 500) -> list[InboxRow]:
        """Pending rows with ``id > after_id`` in arrival order (at most ``limit``).

        Rows this replica accepted recently carry the alert the request already parsed.
        """
        records = await self._run(
            lambda c: c.fetch(_SELECT_ROW + "WHERE state = 'pending' AND id > $1 ORDER BY id LIMIT $2", after_id, limit)
        )
        rows = []
        for record in records:
            row = _row(record)
            alert = self._parsed.pop(row.id, None)
            rows.append(dataclasses.replace(row, alert=alert) if alert is not None else row)
        return rows

    async def replayed(self, up_to_id: int, limit: int = 5000) -> list[InboxRow]:
        """Pending rows an operator replayed, with ``id <= up_to_id``."""
        records = await self._run(
            lambda c: c.fetch(
                _SELECT_ROW + "WHERE state = 'pending' AND replays > 0 AND id <= $1 ORDER BY id LIMIT $2",
                up_to_id,
                limit,
            )
        )
        return [_row(r) for r in records]

    async def mark_done(self, row_id: int, work_item: WorkItemRef | None = None) -> None:
        """The backend confirmed the row: it leaves the pending set (with what it became, if known)."""
        number = work_item.number if work_item is not None else None
        url = work_item.url if work_item is not None else None
        status = await self._run(
            lambda c: c.execute(
                "UPDATE inbox SET state = 'done', done_at = $2, last_error = NULL, "
                "work_item = COALESCE($3, work_item), work_item_url = COALESCE($4, work_item_url) "
                "WHERE id = $1 AND state = 'pending'",
                row_id,
                iso_at(time.time()),
                number,
                url,
            )
        )
        self._depth -= _count(status)

    def mark_done_soon(self, row_id: int, work_item: WorkItemRef | None = None) -> asyncio.Future[None]:
        """:meth:`mark_done` without waiting; confirmations queued meanwhile share one statement.

        The future settles when the confirmation is committed.
        """
        if self._pool is None:
            raise InboxUnavailable("the inbox is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._done.append((row_id, work_item, future))
        if self._done_task is None or self._done_task.done():
            self._done_task = asyncio.create_task(self._confirm_done(), name="pg-inbox-confirm")
        return future

    async def _confirm_done(self) -> None:
        while self._done:
            batch, self._done = self._done, []
            ids = [row_id for row_id, _, _ in batch]
            refs = [(row_id, ref.number, ref.url) for row_id, ref, _ in batch if ref is not None]
            now = iso_at(time.time())
            try:
                status = await self._run(functools.partial(_confirm_batch, ids=ids, refs=refs, now=now))
            except InboxUnavailable as error:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self._depth -= _count(status)
            for _, _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def record_failure(self, row_id: int, attempts: int, error: str, next_attempt_at: float | None) -> None:
        """Remember a failed attempt (survives restarts and a move to another replica)."""
        await self._run(
            lambda c: c.execute(
                "UPDATE inbox SET attempts = $2, last_error = $3, next_attempt_at = $4 "
                "WHERE id = $1 AND state = 'pending'",
                row_id,
                attempts,
                error[:2000],
                next_attempt_at,
            )
        )

    async def park(self, row_id: int, attempts: int, error: str) -> None:
        """Give up on a row: it stays in the database as ``parked``, visible to operators."""
        status = await self._run(
            lambda c: c.execute(
                "UPDATE inbox SET state = 'parked', attempts = $2, last_error = $3, parked_at = $4 "
                "WHERE id = $1 AND state = 'pending'",
                row_id,
                attempts,
                error[:2000],
                iso_at(time.time()),
            )
        )
        changed = _count(status)
        self._depth -= changed
        self._parked += changed

    async def prune(self, older_than_seconds: float, *, limit: int = 5000) -> int:
        """Delete up to ``limit`` done rows confirmed longer ago than the given age."""
        return await self._prune("done", "done_at", older_than_seconds, limit)

    async def prune_discarded(self, older_than_seconds: float, *, limit: int = 5000) -> int:
        """Delete up to ``limit`` discarded rows discarded longer ago than the given age."""
        return await self._prune("discarded", "discarded_at", older_than_seconds, limit)

    async def _prune(self, state: str, column: str, older_than_seconds: float, limit: int) -> int:
        cutoff = iso_at(time.time() - older_than_seconds)
        status = await self._run(
            lambda c: c.execute(
                f"DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE state = '{state}' "
                f"AND {column} < $1 ORDER BY id LIMIT $2)",
                cutoff,
                limit,
            )
        )
        deleted = _count(status)
        self.pruned += deleted
        return deleted

    async def recount(self) -> None:
        """Count pending and parked rows again (other replicas and operators change them)."""
        await self._recount()

    async def _recount(self) -> None:
        async def count(conn: Any) -> Any:
            return await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'parked') "
                "FROM inbox WHERE state IN ('pending', 'parked')"
            )

        if self._pool is None:
            raise InboxUnavailable("the inbox is closed")
        async with self._pool.acquire() as conn:
            record = await count(conn)
        self._depth, self._parked = record[0], record[1]

    async def probe(self) -> None:
        """Prove the database takes a committed write now; raises :class:`InboxUnavailable`."""
        await self._run(
            lambda c: c.execute(
                "INSERT INTO inbox_meta (key, value) VALUES ('probe', $1) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                iso_at(time.time()),
            )
        )

    def puts_waiting(self) -> int:
        """Deliveries handed to the writer and not yet answered."""
        return self._puts_waiting

    def depth(self) -> int:
        """Rows waiting for the backend (this replica's latest view)."""
        return self._depth

    def parked(self) -> int:
        """Rows parked as failed (this replica's latest view)."""
        return self._parked

    # --- background tasks --------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        """Hold a LISTEN connection; reconnect after a loss and report a wake-up (rows may have come)."""
        while True:
            lost: asyncio.Event = asyncio.Event()
            try:
                conn = await self.database.connect()
                self._listener = conn
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._notified)
                self._wake_remote("")  # anything committed while we were not listening
                while not lost.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(RECOUNT_SECONDS):
                            await lost.wait()
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=RECOUNT_SECONDS)
            except asyncio.CancelledError:
                raise
            except connection_errors() as error:
                log.warning(
                    "inbox listener lost its connection; reconnecting",
                    extra={"event": "inbox_listen_failed", "error": str(error) or type(error).__name__},
                )
            finally:
                if self._listener is not None:
                    with contextlib.suppress(Exception):
                        self._listener.terminate()
                    self._listener = None
            await asyncio.sleep(LISTEN_RETRY_SECONDS)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if not payload.startswith(f"{self.replica}:"):
            self._wake_remote(payload)

    def _wake_remote(self, payload: str) -> None:
        if self._on_remote is not None:
            self._on_remote(payload)

    async def _recount_loop(self) -> None:
        while True:
            await asyncio.sleep(RECOUNT_SECONDS)
            with contextlib.suppress(*connection_errors(), InboxUnavailable):
                await self._recount()

    async def _prune_loop(self) -> None:
        periods = [p for p in (self.retention_seconds, self.discarded_retention_seconds) if p is not None]
        interval = min(3600.0, max(min(periods) / 10, 1.0))
        while True:
            try:
                if self.retention_seconds is not None:
                    while await self.prune(self.retention_seconds) > 0:
                        await asyncio.sleep(0)
                if self.discarded_retention_seconds is not None:
                    while await self.prune_discarded(self.discarded_retention_seconds) > 0:
                        await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - housekeeping: try again later
                log.warning("inbox pruning failed", extra={"event": "prune_failed", "error": str(error)})
            await asyncio.sleep(interval)


async def _confirm_batch(conn: Any, *, ids: list[int], refs: list[tuple[int, str, str | None]], now: str) -> str:
    """Mark rows done, and record the work item each became, in one transaction; the UPDATE's status."""
    async with conn.transaction():
        status: str = await conn.execute(
            "UPDATE inbox SET state = 'done', done_at = $2, last_error = NULL "
            "WHERE id = ANY($1::bigint[]) AND state = 'pending'",
            ids,
            now,
        )
        if refs:
            await conn.executemany("UPDATE inbox SET work_item = $2, work_item_url = $3 WHERE id = $1", refs)
    return status


def _is_configuration(error: BaseException) -> bool:
    """Whether a failure to open the inbox is the configuration's (not the network's or the server's state)."""
    import asyncpg

    return isinstance(
        error,
        SchemaTooNew
        | asyncpg.InvalidAuthorizationSpecificationError  # wrong password or token, no such role, pg_hba
        | asyncpg.InvalidCatalogNameError  # no such database
        | asyncpg.InsufficientPrivilegeError,
    )


def _count(status: str) -> int:
    """The row count of an asyncpg command status such as ``UPDATE 1`` or ``DELETE 0``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, AttributeError):
        return 0
