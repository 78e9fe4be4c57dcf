"""Taking SQLite's write lock on a file that two connections write (the inbox and the embedded backend)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator

LOCK_POLL_SECONDS = 0.0005
"""How often a writer retries for the write lock while the other connection holds it."""


def is_busy(error: sqlite3.OperationalError) -> bool:
    """Whether ``error`` means another connection holds the lock (SQLITE_BUSY or SQLITE_LOCKED)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(error) or "busy" in str(error)


def begin_immediate(conn: sqlite3.Connection, timeout: float, on_wait: Callable[[float], None] | None = None) -> None:
    """``BEGIN IMMEDIATE``, polling every :data:`LOCK_POLL_SECONDS` up to ``timeout`` while the lock is taken.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries, so a writer that
    keeps losing the race to the other connection (whose next transaction starts right after the
    previous one) can wait far longer than the lock is actually held. Short, even polls take it
    soon after it is released. Raises the last :class:`sqlite3.OperationalError` when the lock
    stays taken (or for any other error); ``on_wait(seconds)`` is told of every wait.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        return
    except sqlite3.OperationalError as error:
        if not is_busy(error):
            raise
    started = time.monotonic()
    deadline = started + timeout
    try:
        while True:
            time.sleep(LOCK_POLL_SECONDS)
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if not is_busy(error) or time.monotonic() >= deadline:
                    raise
    finally:
        if on_wait is not None:
            on_wait(time.monotonic() - started)


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection, timeout: float) -> Iterator[sqlite3.Connection]:
    """A write transaction (:func:`begin_immediate`): committed when the block ends, rolled back if it raises."""
    begin_immediate(conn, timeout)
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
