"""The durable inbox on its own: group commit, idempotency, durability, dispatcher bookkeeping."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from receiver.storage.records import InboxOpenError, InboxUnavailable
from receiver.storage.sqlite.inbox import Inbox, count_by_state, list_parked

pytestmark = pytest.mark.anyio


async def test_concurrent_puts_share_commits_and_all_land(tmp_path: Path) -> None:
    db = str(tmp_path / "inbox.db")

    inbox = Inbox(db)
    await inbox.open()
    results = await asyncio.gather(*(inbox.put(f"alert-{n}", "Fired", b"{}") for n in range(300)))
    assert all(not result.duplicate for result in results)
    assert len({result.row_id for result in results}) == 300
    await inbox.close()

    assert inbox.rows_written == 300
    # Group commit: 300 concurrent requests did not need 300 transactions (fsyncs).
    assert inbox.commits < 300
    assert count_by_state(db)["pending"] == 300


async def test_repeat_is_duplicate_within_and_across_batches(tmp_path: Path) -> None:
    db = str(tmp_path / "inbox.db")

    inbox = Inbox(db)
    await inbox.open()
    same_batch = await asyncio.gather(*(inbox.put("a", "Fired", b"first") for _ in range(5)))
    later = await inbox.put("a", "Fired", b"second")
    other_condition = await inbox.put("a", "Resolved", b"third")
    await inbox.close()
    flags = [r.duplicate for r in same_batch] + [later.duplicate, other_condition.duplicate]

    assert flags[:5].count(False) == 1 and flags[:5].count(True) == 4
    assert flags[5:] == [True, False]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT monitor_condition, body FROM inbox ORDER BY id").fetchall() == [
        ("Fired", b"first"),
        ("Resolved", b"third"),
    ]
    conn.close()


async def test_rows_survive_reopen_and_leave_pending_only_when_done_or_parked(tmp_path: Path) -> None:
    db = str(tmp_path / "inbox.db")

    inbox = Inbox(db)
    await inbox.open()
    for n in range(4):
        await inbox.put(f"alert-{n}", "Fired", f'{{"n": {n}}}'.encode())
    await inbox.close()

    inbox = Inbox(db)  # the next run of the receiver on the same file
    await inbox.open()
    assert inbox.depth() == 4
    rows = await inbox.pending()
    assert [row.alert_id for row in rows] == [f"alert-{n}" for n in range(4)]
    assert rows[2].body == b'{"n": 2}'
    assert [row.alert_id for row in await inbox.pending(after_id=rows[1].id)] == ["alert-2", "alert-3"]
    await inbox.mark_done(rows[0].id)
    await inbox.record_failure(rows[1].id, 2, "ITSM down", 12345.0)
    await inbox.park(rows[2].id, 3, "refused: bad field")
    assert inbox.depth() == 2 and inbox.parked() == 1
    remaining = await inbox.pending()
    assert [(row.alert_id, row.attempts, row.next_attempt_at) for row in remaining] == [
        ("alert-1", 2, 12345.0),
        ("alert-3", 0, None),
    ]
    await inbox.close()

    assert count_by_state(db) == {"pending": 2, "done": 1, "parked": 1}
    parked = list_parked(db)
    assert len(parked) == 1
    row = parked[0]
    assert set(row) == {"id", "alert_id", "monitor_condition", "attempts", "last_error", "received_at", "parked_at"}
    assert (row["alert_id"], row["monitor_condition"], row["attempts"], row["last_error"]) == (
        "alert-2",
        "Fired",
        3,
        "refused: bad field",
    )
    assert row["received_at"].endswith("Z") and row["parked_at"].endswith("Z")


def test_list_parked_never_creates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "absent.db"
    assert list_parked(str(missing)) == []
    assert count_by_state(str(missing)) == {"pending": 0, "done": 0, "parked": 0}
    assert not missing.exists()


async def test_full_disk_fails_the_put_then_recovers(tmp_path: Path) -> None:
    db = str(tmp_path / "inbox.db")

    inbox = Inbox(db)
    await inbox.open()
    await inbox.put("small", "Fired", b"{}")
    # Cap the file at its current size: the next page it needs is "disk full" (SQLITE_FULL).
    pages = await inbox.run_in_transaction(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    await inbox.run_in_transaction(lambda conn: conn.execute(f"PRAGMA max_page_count={pages}"))
    with pytest.raises(InboxUnavailable):
        await inbox.put("big", "Fired", b"x" * 200_000)
    with pytest.raises(InboxUnavailable):
        await inbox.put("big-2", "Fired", b"y" * 200_000)
    assert inbox.depth() == 1
    await inbox.run_in_transaction(lambda conn: conn.execute("PRAGMA max_page_count=1073741823"))
    result = await inbox.put("big", "Fired", b"x" * 200_000)
    assert result.duplicate is False
    assert inbox.depth() == 2
    await inbox.close()

    assert count_by_state(db)["pending"] == 2


async def test_locked_database_fails_within_busy_timeout(tmp_path: Path) -> None:
    db = str(tmp_path / "inbox.db")
    blocker = sqlite3.connect(db, isolation_level=None)

    inbox = Inbox(db, busy_timeout=0.2)
    await inbox.open()
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(InboxUnavailable):
            await inbox.put("locked", "Fired", b"{}")
        with pytest.raises(InboxUnavailable):
            await inbox.probe()
    finally:
        blocker.execute("ROLLBACK")
    await inbox.probe()
    assert (await inbox.put("locked", "Fired", b"{}")).duplicate is False
    await inbox.close()

    blocker.close()


async def test_unopenable_path_is_reported(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")

    inbox = Inbox(str(not_a_dir / "inbox.db"))
    with pytest.raises(InboxOpenError, match="cannot open the SQLite database"):
        await inbox.open()
    with pytest.raises(InboxUnavailable):
        await inbox.put("a", "Fired", b"{}")


async def test_close_drains_queued_writes(tmp_path: Path) -> None:
    db = str(tmp_path / "inbox.db")

    inbox = Inbox(db)
    await inbox.open()
    puts = [asyncio.ensure_future(inbox.put(f"a-{n}", "Fired", b"{}")) for n in range(50)]
    await asyncio.sleep(0)  # every put is queued
    await inbox.close()
    results = await asyncio.gather(*puts)
    assert all(not result.duplicate for result in results)

    assert count_by_state(db)["pending"] == 50


async def test_a_failing_operation_fails_only_its_caller_and_the_writer_lives_on(tmp_path: Path) -> None:
    db = str(tmp_path / "inbox.db")

    inbox = Inbox(db)
    await inbox.open()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO inbox_meta (key, value) VALUES ('x', 'y')")
        raise RuntimeError("a bug in an operation")

    results = await asyncio.gather(
        inbox.run_in_transaction(broken), inbox.put("ok", "Fired", b"{}"), return_exceptions=True
    )
    assert isinstance(results[0], RuntimeError)
    assert results[1].duplicate is False
    # The broken operation's own write was rolled back; the writer still works.
    assert (
        await inbox.run_in_transaction(
            lambda conn: conn.execute("SELECT count(*) FROM inbox_meta WHERE key = 'x'").fetchone()[0]
        )
        == 0
    )
    assert (await inbox.put("after", "Fired", b"{}")).duplicate is False
    await inbox.close()

    assert count_by_state(db)["pending"] == 2


async def test_prune_deletes_only_old_done_rows(tmp_path: Path) -> None:
    db = str(tmp_path / "inbox.db")

    inbox = Inbox(db)
    await inbox.open()
    for name in ("old-done", "new-done", "old-parked", "pending"):
        await inbox.put(name, "Fired", b"{}")
    rows = {row.alert_id: row.id for row in await inbox.pending()}
    await inbox.mark_done(rows["old-done"])
    await inbox.mark_done(rows["new-done"])
    await inbox.park(rows["old-parked"], 1, "refused")
    # Age two rows by a year, as if confirmed/parked long ago.
    await inbox.run_in_transaction(
        lambda conn: conn.execute(
            "UPDATE inbox SET done_at = '2025-01-01T00:00:00.000Z', parked_at = '2025-01-01T00:00:00.000Z' "
            "WHERE alert_id IN ('old-done', 'old-parked')"
        )
    )
    assert await inbox.prune(7 * 86400) == 1
    assert await inbox.prune(7 * 86400) == 0
    await inbox.close()

    conn = sqlite3.connect(db)
    left = sorted(row[0] for row in conn.execute("SELECT alert_id FROM inbox"))
    conn.close()
    assert left == ["new-done", "old-parked", "pending"]
    assert count_by_state(db) == {"pending": 1, "done": 1, "parked": 1}
