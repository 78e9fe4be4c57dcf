"""Opening the receiver's SQLite file: the one place that sets WAL, the sync level and the busy timeout.

Writers (the inbox, the embedded backend) use :func:`connect`; listings for operators use
:func:`connect_for_reading`, which never creates a file.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Literal

Synchronous = Literal["FULL", "NORMAL"]

DEFAULT_BUSY_TIMEOUT = 5.0
"""Seconds a connection waits for another connection's lock before SQLite reports it busy."""


class DatabaseNotFoundError(FileNotFoundError):
    """The SQLite file named for reading does not exist (reading never creates one)."""


def connect(
    db_path: str,
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    synchronous: Synchronous = "FULL",
    readonly: bool = False,
) -> sqlite3.Connection:
    """Open ``db_path`` for a writer: autocommit, WAL, ``synchronous``, busy timeout; usable from any thread.

    ``readonly`` opens an existing file without WAL or sync settings (those need a writable file).
    """
    if readonly:
        conn = sqlite3.connect(
            f"{Path(db_path).resolve().as_uri()}?mode=ro",
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
    else:
        conn = sqlite3.connect(db_path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    return conn


def connect_for_reading(db_path: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> sqlite3.Connection:
    """Open an existing file to read it, with rows as :class:`sqlite3.Row`.

    Read-write when allowed (``mode=rw`` never creates the file and lets SQLite create the
    ``-shm`` a WAL reader needs), else read-only (another user's file, a read-only mount).
    Raises :class:`DatabaseNotFoundError` when ``db_path`` does not exist.
    """
    if not os.path.isfile(db_path):
        raise DatabaseNotFoundError(f"no database at {db_path!r}")
    uri = Path(db_path).absolute().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=rw", uri=True, timeout=busy_timeout)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.OperationalError:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=busy_timeout)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    return conn


def has_tables(conn: sqlite3.Connection, *names: str) -> bool:
    """Whether every one of ``names`` is a table in ``conn``'s database."""
    found = {
        row[0]
        for row in conn.execute(
            f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({','.join('?' * len(names))})",
            names,
        )
    }
    return found == set(names)
