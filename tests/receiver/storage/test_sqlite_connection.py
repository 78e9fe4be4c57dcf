"""Opening the receiver's SQLite file: the settings a writer gets, read-only opening, reading never creates."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from receiver.storage.sqlite.connection import (
    DatabaseNotFoundError,
    Synchronous,
    connect,
    connect_for_reading,
    has_tables,
)


def _pragma(conn: sqlite3.Connection, name: str) -> object:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


@pytest.mark.parametrize(("synchronous", "level"), [("FULL", 2), ("NORMAL", 1)])
def test_a_writer_gets_wal_its_sync_level_the_busy_timeout_and_autocommit(
    tmp_path: Path, synchronous: Synchronous, level: int
) -> None:
    conn = connect(str(tmp_path / "db.sqlite"), busy_timeout=2.5, synchronous=synchronous)
    try:
        assert _pragma(conn, "journal_mode") == "wal"
        assert _pragma(conn, "synchronous") == level
        assert _pragma(conn, "busy_timeout") == 2500
        conn.execute("CREATE TABLE t (x)")
        assert not conn.in_transaction  # autocommit: transactions are the caller's BEGIN
    finally:
        conn.close()


def test_a_readonly_connection_reads_and_refuses_writes(tmp_path: Path) -> None:
    db = str(tmp_path / "db.sqlite")
    writer = connect(db)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("INSERT INTO t VALUES (1)")
    reader = connect(db, readonly=True)
    try:
        assert reader.execute("SELECT x FROM t").fetchall() == [(1,)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.execute("INSERT INTO t VALUES (2)")
    finally:
        reader.close()
        writer.close()


def test_reading_a_missing_file_raises_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    with pytest.raises(DatabaseNotFoundError, match="no database at"):
        connect_for_reading(str(missing))
    assert list(tmp_path.iterdir()) == []


def test_reading_gives_rows_by_name_and_has_tables_names_what_exists(tmp_path: Path) -> None:
    db = str(tmp_path / "db.sqlite")
    writer = connect(db)
    writer.execute("CREATE TABLE a (x)")
    writer.execute("INSERT INTO a VALUES (7)")
    writer.close()
    conn = connect_for_reading(db)
    try:
        assert conn.execute("SELECT x FROM a").fetchone()["x"] == 7
        assert has_tables(conn, "a") and not has_tables(conn, "a", "b")
    finally:
        conn.close()
