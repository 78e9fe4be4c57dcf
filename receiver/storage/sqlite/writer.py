"""One thread that owns one SQLite connection and does every write of its owner, in batches.

Callers on the event loop queue jobs and await their futures; the thread takes everything queued,
hands it to the owner's handler, and settles the batch's futures with one hop back to each loop.
docs/work-items.md ("Writer thread") says why the receiver writes this way.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

__all__ = ["SQLiteWriter", "WriterJob", "settle_jobs"]

_log = logging.getLogger(__name__)

R = TypeVar("R")
J = TypeVar("J", bound="WriterJob[Any]")


class WriterJob(Generic[R]):
    """One unit of work for the writer thread; the thread answers it with :meth:`succeed` or :meth:`fail`."""

    __slots__ = ("_answered", "_error", "_future", "_loop", "_result")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._future: asyncio.Future[R] | None = None
        self._answered = False
        self._error: BaseException | None = None

    def succeed(self, result: R) -> None:
        """Answer the job with ``result`` (the last answer given before the batch is settled counts)."""
        self._result = result
        self._error = None
        self._answered = True

    def fail(self, error: BaseException) -> None:
        """Answer the job with ``error``, raised to its caller."""
        self._error = error
        self._answered = True

    @property
    def answered(self) -> bool:
        """Whether :meth:`succeed` or :meth:`fail` was called."""
        return self._answered

    @property
    def result(self) -> R:
        """The answer given with :meth:`succeed` (read it only when :attr:`answered` and no :attr:`error`)."""
        return self._result

    @property
    def error(self) -> BaseException | None:
        """The error the job was answered with, if any."""
        return self._error

    @property
    def future(self) -> asyncio.Future[R]:
        """What the caller awaits; exists once the job was submitted."""
        if self._future is None:
            raise RuntimeError("the job was not submitted to a writer")
        return self._future

    def settle(self) -> None:
        """On the job's event loop: hand the answer to the caller (unless it stopped waiting)."""
        future = self._future
        if future is None or future.done():  # the caller gave up (timeout, cancellation)
            return
        if self._error is not None:
            future.set_exception(self._error)
        elif self._answered:
            future.set_result(self._result)
        else:
            future.set_exception(RuntimeError("the SQLite writer left the job unanswered"))


class _Call(WriterJob[R]):
    """A function to run on the writer thread with its connection (:meth:`SQLiteWriter.call`)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[sqlite3.Connection], R]) -> None:
        super().__init__()
        self.fn = fn


def settle_jobs(jobs: Sequence[WriterJob[Any]]) -> None:
    """The default way a batch is settled on its loop: each job's answer to its caller."""
    for job in jobs:
        job.settle()


class SQLiteWriter(Generic[J]):
    """The writer thread of one owner: its queue, its connection, its batches.

    ``connect`` opens the connection on the thread when it is first needed (and again after
    :meth:`close_connection`); what it raises goes to the jobs that needed it. ``handle`` is
    called on the thread with each run of consecutive jobs of type ``J`` (at most ``max_batch``
    jobs are taken at once) and must answer each of them; :meth:`call` jobs run between those
    runs, in the order they were queued. ``settle`` is called on each job's event loop with the
    batch's jobs of that loop (default: :func:`settle_jobs`). ``idle`` is called on the thread
    whenever no job arrived for ``idle_seconds``.

    The thread starts with the first job and ends with :meth:`stop`, which finishes what was
    queued and closes the connection; a later job starts it again.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], sqlite3.Connection],
        handle: Callable[[list[J]], None],
        *,
        max_batch: int = 256,
        settle: Callable[[list[WriterJob[Any]]], None] = settle_jobs,
        idle: Callable[[], None] | None = None,
        idle_seconds: float = 1.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.name = name
        self._connect = connect
        self._handle = handle
        self._max_batch = max_batch
        self._settle = settle
        self._idle = idle
        self._idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[WriterJob[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is started (and not yet stopped)."""
        return self._thread is not None

    # -- event loop side -----------------------------------------------------------------------

    def submit(self, job: J) -> None:
        """Queue ``job``; await ``job.future`` for its answer. Call on the event loop."""
        self._enqueue(job)

    async def call(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        """Run ``fn(connection)`` on the thread, in queue order; its result, or what it raised."""
        job = _Call(fn)
        self._enqueue(job)
        return await job.future

    async def stop(self) -> None:
        """Finish every job queued, close the connection and end the thread."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(thread.join)
        self._thread = None

    def _enqueue(self, job: WriterJob[Any]) -> None:
        loop = asyncio.get_running_loop()
        job._loop = loop
        job._future = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()
        self._queue.put(job)

    # -- writer thread side --------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """The thread's connection, opened with ``connect`` if there is none. Call on the thread."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def close_connection(self) -> None:
        """Close the connection (the next job opens a new one). Call on the thread."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _work(self) -> None:
        """Take everything queued, process it as one batch, repeat; after the stop mark, drain and end."""
        jobs = self._queue
        stopping = False
        try:
            while True:
                first: WriterJob[Any] | None
                if stopping:
                    try:
                        first = jobs.get_nowait()
                    except queue.Empty:
                        return
                elif self._idle is None:
                    first = jobs.get()
                else:
                    try:
                        first = jobs.get(timeout=self._idle_seconds)
                    except queue.Empty:
                        self._run_idle()
                        continue
                batch: list[WriterJob[Any]] = []
                if first is None:
                    stopping = True
                else:
                    batch.append(first)
                while len(batch) < self._max_batch:
                    try:
                        job = jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stopping = True
                    else:
                        batch.append(job)
                if batch:
                    self._process(batch)
        finally:
            self.close_connection()

    def _process(self, batch: list[WriterJob[Any]]) -> None:
        run: list[J] = []
        for job in batch:
            if not isinstance(job, _Call):
                run.append(cast(J, job))  # every job but a _Call was submitted as J
                continue
            if run:  # keep the order of calls and the owner's jobs
                self._handle_run(run)
                run = []
            try:
                job.succeed(job.fn(self.connection()))
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                job.fail(error)
        if run:
            self._handle_run(run)
        self._answer(batch)

    def _handle_run(self, run: list[J]) -> None:
        try:
            self._handle(run)
        except Exception as error:  # noqa: BLE001 - a bug must not kill the only writer
            _log.exception("SQLite writer error", extra={"event": "sqlite_writer_error", "writer": self.name})
            for job in run:
                if not job.answered:
                    job.fail(error)

    def _answer(self, batch: list[WriterJob[Any]]) -> None:
        """Hand the answers over with one hop per event loop (normally exactly one)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[WriterJob[Any]]] = {}
        for job in batch:
            if job._loop is not None:
                by_loop.setdefault(job._loop, []).append(job)
        for loop, its_jobs in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settle, its_jobs)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _run_idle(self) -> None:
        assert self._idle is not None
        try:
            self._idle()
        except Exception:  # noqa: BLE001 - housekeeping; the next idle turn tries again
            _log.exception("SQLite writer idle hook failed", extra={"event": "sqlite_writer_idle_failed"})
