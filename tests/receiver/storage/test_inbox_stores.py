"""The inbox's behaviour, held for both stores: the SQLite file and PostgreSQL (a real server).

Each test runs once per store through the :class:`InboxStore` seam; the SQLite-only details
(file locks, page limits) stay in test_inbox.py, PostgreSQL's own (replicas, outages) in
test_postgres_*.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from receiver.storage import InboxStore, InboxUnavailable, is_postgres, open_store
from receiver.storage.records import WorkItemRef

pytestmark = pytest.mark.anyio

Store = Callable[..., InboxStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``SECURE_EXPORT_DB`` of an empty database of each store."""
    if request.param == "sqlite":
        return str(tmp_path / "inbox.db")
    return str(request.getfixturevalue("postgres_url"))


async def _sql(db: str, statement: str) -> list[tuple[Any, ...]]:
    """Run one statement on the database directly (not through the store under test)."""
    if is_postgres(db):
        import asyncpg

        conn = await asyncpg.connect(db, ssl="require")
        try:
            return [tuple(r) for r in await conn.fetch(statement)]
        finally:
            await conn.close()
    conn3 = sqlite3.connect(db)
    try:
        rows = conn3.execute(statement).fetchall()
        conn3.commit()
        return rows
    finally:
        conn3.close()


async def _opened(db: str, **kwargs: Any) -> InboxStore:
    store = open_store(db, **kwargs)
    await store.open()
    return store


async def test_concurrent_puts_all_land_and_share_commits(db: str) -> None:
    inbox = await _opened(db)
    results = await asyncio.gather(*(inbox.put(f"alert-{n}", "Fired", b"{}") for n in range(300)))
    assert all(not r.duplicate for r in results)
    assert len({r.row_id for r in results}) == 300
    assert inbox.depth() == 300
    await inbox.close()
    assert inbox.rows_written == 300
    assert inbox.commits < 300  # group commit: concurrent requests share transactions
    assert await _sql(db, "SELECT count(*) FROM inbox WHERE state = 'pending'") == [(300,)]


async def test_repeat_is_a_duplicate_within_and_across_batches(db: str) -> None:
    inbox = await _opened(db)
    same_batch = await asyncio.gather(*(inbox.put("a", "Fired", b"first") for _ in range(5)))
    later = await inbox.put("a", "Fired", b"second")
    other = await inbox.put("a", "Resolved", b"third")
    await inbox.close()
    flags = [r.duplicate for r in same_batch]
    assert flags.count(False) == 1 and flags.count(True) == 4
    assert (later.duplicate, other.duplicate) == (True, False)
    rows = await _sql(db, "SELECT monitor_condition, body FROM inbox ORDER BY id")
    assert [(c, bytes(b)) for c, b in rows] == [("Fired", b"first"), ("Resolved", b"third")]


async def test_rows_survive_reopen_and_leave_pending_only_when_done_or_parked(db: str) -> None:
    inbox = await _opened(db)
    for n in range(4):
        await inbox.put(f"alert-{n}", "Fired", f'{{"n": {n}}}'.encode())
    await inbox.close()

    inbox = await _opened(db)
    assert inbox.depth() == 4
    rows = await inbox.pending()
    assert [row.alert_id for row in rows] == [f"alert-{n}" for n in range(4)]
    assert rows[2].body == b'{"n": 2}'
    assert [r.alert_id for r in await inbox.pending(after_id=rows[1].id)] == ["alert-2", "alert-3"]
    await inbox.mark_done(rows[0].id, WorkItemRef("WI0000001", "http://x/1"))
    await inbox.record_failure(rows[1].id, 2, "ITSM down", 12345.0)
    await inbox.park(rows[2].id, 3, "refused: bad field")
    assert inbox.depth() == 2 and inbox.parked() == 1
    remaining = await inbox.pending()
    assert [(r.alert_id, r.attempts, r.next_attempt_at) for r in remaining] == [
        ("alert-1", 2, 12345.0),
        ("alert-3", 0, None),
    ]
    # Done rows stay: a late repeat is still recognised and changes nothing.
    assert (await inbox.put("alert-0", "Fired", b"again")).duplicate is True
    await inbox.recount()
    assert (inbox.depth(), inbox.parked()) == (2, 1)
    await inbox.close()
    states = dict(await _sql(db, "SELECT alert_id, state FROM inbox"))
    assert states == {"alert-0": "done", "alert-1": "pending", "alert-2": "parked", "alert-3": "pending"}
    assert await _sql(
        db, "SELECT work_item, last_error FROM inbox WHERE alert_id IN ('alert-0', 'alert-2') ORDER BY id"
    ) == [
        ("WI0000001", None),
        (None, "refused: bad field"),
    ]


async def test_mark_done_soon_settles_after_the_commit(db: str) -> None:
    inbox = await _opened(db)
    row_id = (await inbox.put("a", "Fired", b"{}")).row_id
    assert row_id is not None
    await inbox.mark_done_soon(row_id)
    assert await _sql(db, "SELECT state FROM inbox") == [("done",)]
    assert inbox.depth() == 0
    await inbox.close()


async def test_close_commits_what_is_queued(db: str) -> None:
    inbox = await _opened(db)
    puts = [asyncio.ensure_future(inbox.put(f"a-{n}", "Fired", b"{}")) for n in range(50)]
    await asyncio.sleep(0)
    await inbox.close()
    results = await asyncio.gather(*puts)
    assert all(not r.duplicate for r in results)
    assert await _sql(db, "SELECT count(*) FROM inbox") == [(50,)]
    with pytest.raises(InboxUnavailable):
        await inbox.put("late", "Fired", b"{}")


async def test_prune_deletes_only_old_done_and_discarded_rows(db: str) -> None:
    inbox = await _opened(db)
    for name in ("old-done", "new-done", "old-parked", "pending"):
        await inbox.put(name, "Fired", b"{}")
    rows = {row.alert_id: row.id for row in await inbox.pending()}
    await inbox.mark_done(rows["old-done"])
    await inbox.mark_done(rows["new-done"])
    await inbox.park(rows["old-parked"], 1, "refused")
    await _sql(
        db,
        "UPDATE inbox SET done_at = '2025-01-01T00:00:00.000Z', parked_at = '2025-01-01T00:00:00.000Z' "
        "WHERE alert_id IN ('old-done', 'old-parked')",
    )
    assert await inbox.prune(7 * 86400) == 1
    assert await inbox.prune(7 * 86400) == 0
    assert await inbox.prune_discarded(7 * 86400) == 0
    await inbox.close()
    assert sorted(r[0] for r in await _sql(db, "SELECT alert_id FROM inbox")) == [
        "new-done",
        "old-parked",
        "pending",
    ]


async def test_probe_writes_and_an_unreachable_database_is_unavailable(db: str, tmp_path: Path) -> None:
    inbox = await _opened(db)
    await inbox.probe()
    await inbox.close()
    if is_postgres(db):
        from tests.support.postgres import free_port

        unreachable = db.replace(db.split("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{free_port()}")
    else:
        (tmp_path / "file").write_text("")
        unreachable = str(tmp_path / "file" / "inbox.db")
    broken = open_store(unreachable)
    with pytest.raises(InboxUnavailable, match="cannot open the (inbox|SQLite) database"):
        await broken.open()
    with pytest.raises(InboxUnavailable):
        await broken.put("a", "Fired", b"{}")
