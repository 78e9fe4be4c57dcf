"""The lifecycle rules' state, held for both stores: the SQLite file and PostgreSQL (a real server).

Each test drives :class:`receiver.dispatch.lifecycle.Lifecycle` with a hand-moved clock through the
:class:`receiver.storage.lifecycle.LifecycleStore` of each store: flap cycles, timers that survive
a restart, and a due timer that becomes exactly one inbox row. PostgreSQL's own cases (two
replicas sweeping at once, state written by one and read by the next lease holder) follow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from receiver.alerts.events import SYNTHETIC_ALERT_PREFIX, AlertEvent, event_from_body
from receiver.dispatch.lifecycle import Lifecycle, synthetic_resolved
from receiver.storage import InboxRow, InboxStore, open_store
from receiver.storage.lifecycle import open_lifecycle_store
from receiver.storage.postgres.inbox import PostgresInbox
from receiver.storage.sqlite.inbox import Inbox
from tests.support.alerts import alert_body

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``SECURE_EXPORT_DB`` of an empty database of each store."""
    if request.param == "sqlite":
        return str(tmp_path / "inbox.db")
    return str(request.getfixturevalue("postgres_url"))


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def _opened(db: str, clock: Clock, **settings: Any) -> tuple[InboxStore, Lifecycle, list[InboxRow]]:
    inbox = open_store(db)
    await inbox.open()
    committed: list[InboxRow] = []
    inbox.set_on_committed(committed.extend)
    lifecycle = Lifecycle(open_lifecycle_store(inbox), clock=clock, **settings)
    await lifecycle.open()
    return inbox, lifecycle, committed


def _event(n: int, condition: str = "Fired", *, service: str = "Platform", key: str = "rule|vm") -> AlertEvent:
    document = alert_body(n, condition)
    document["data"]["essentials"]["monitoringService"] = service
    event = event_from_body(json.dumps(document).encode(), "alert")
    return dataclasses.replace(event, correlation_key=key, lifecycle_key=key)  # rule-target mode


async def _applied(lifecycle: Lifecycle, event: AlertEvent) -> AlertEvent:
    """What the dispatcher does around a backend call."""
    event = await lifecycle.before_apply(event)
    await lifecycle.after_apply(event)
    return event


async def _resolutions(db: str) -> list[tuple[str, str]]:
    """The receiver's own Resolved rows in the inbox: (alert id, state)."""
    inbox = open_store(db)
    await inbox.open()
    try:
        rows = await inbox.pending(0, 1000)
        return [
            (row.alert_id, row.monitor_condition) for row in rows if row.alert_id.startswith(SYNTHETIC_ALERT_PREFIX)
        ]
    finally:
        await inbox.close()


async def test_more_cycles_than_allowed_hold_the_resolved_and_a_quiet_period_resolves(db: str) -> None:
    clock = Clock()
    inbox, lifecycle, committed = await _opened(db, clock, flap_cycles=2, flap_quiet=60, reopen_window=3600)
    held = []
    for n in range(1, 4):
        await _applied(lifecycle, _event(n))
        clock.now += 30
        held.append((await _applied(lifecycle, _event(n, "Resolved"))).hold)
        clock.now += 30
    assert held[:2] == [None, None]
    assert held[2] is not None and held[2].startswith("Flapping: 3 fire/resolve cycles within 1h")
    [timer] = await lifecycle.pending_timers()
    assert timer["reason"] == "flap-quiet"
    # A Fired during the quiet period cancels it; the next Resolved is held again with a new clock.
    await _applied(lifecycle, _event(4))
    assert await lifecycle.pending_timers() == []
    assert (await _applied(lifecycle, _event(4, "Resolved"))).hold is not None
    assert await lifecycle.sweep() == 0
    clock.now += 61
    assert await lifecycle.sweep() == 1
    [(alert_id, condition)] = await _resolutions(db)
    assert alert_id.startswith(f"{SYNTHETIC_ALERT_PREFIX}flap-quiet/") and condition == "Resolved"
    assert [row.alert_id for row in committed] == [alert_id]  # the dispatcher hears of it at the commit
    assert await lifecycle.pending_timers() == []
    await inbox.close()


async def test_overlapping_instances_are_not_cycles(db: str) -> None:
    clock = Clock()
    inbox, lifecycle, _ = await _opened(db, clock, flap_cycles=1, reopen_window=3600)
    await _applied(lifecycle, _event(1))
    await _applied(lifecycle, _event(2))  # another dimension of the same rule, still firing
    assert (await _applied(lifecycle, _event(1, "Resolved"))).hold is None
    assert (await _applied(lifecycle, _event(2, "Resolved"))).hold is None
    await _applied(lifecycle, _event(3))
    await _applied(lifecycle, _event(3))  # a replay: counted once
    assert (await _applied(lifecycle, _event(3, "Resolved"))).hold is not None  # the second cycle
    await inbox.close()


async def test_the_stateless_ttl_survives_a_restart_and_becomes_one_inbox_row(db: str) -> None:
    activity = "Activity Log - Administrative"

    clock = Clock()
    inbox, lifecycle, _ = await _opened(db, clock, stateless_ttl=100)
    await _applied(lifecycle, _event(1, service=activity, key="k"))
    clock.now += 60
    await _applied(lifecycle, _event(2, service=activity, key="k"))  # a repeat restarts the clock
    await _applied(lifecycle, _event(3))  # a stateful alert: no timer
    await inbox.close()
    inbox, lifecycle, committed = await _opened(db, clock, stateless_ttl=100)  # a restart
    [timer] = await lifecycle.pending_timers()
    assert timer["reason"] == "stateless-ttl"
    clock.now += 99
    assert await lifecycle.sweep() == 0
    clock.now += 2
    assert await lifecycle.sweep() == 1
    assert await lifecycle.sweep() == 0
    [(alert_id, _)] = await _resolutions(db)
    assert alert_id == synthetic_resolved("k", "stateless-ttl", clock.now - 1, 100, {}, 0)[0]
    assert [row.id for row in committed] == [row.id for row in await inbox.pending(0, 100) if row.alert_id == alert_id]
    assert inbox.depth() >= 1 and lifecycle.resolutions == 1
    await inbox.close()


async def test_a_timer_whose_resolved_is_stored_already_is_deleted_without_a_second_row(db: str) -> None:
    clock = Clock()
    inbox, lifecycle, _ = await _opened(db, clock, stateless_ttl=10)
    await _applied(lifecycle, _event(1, service="ServiceHealth"))
    [timer] = await lifecycle.store.timers()
    alert_id, body = synthetic_resolved(
        timer.correlation_key, timer.reason, timer.due_at, timer.after_seconds, {}, clock.now
    )
    assert not (await inbox.put(alert_id, "Resolved", body)).duplicate  # as if a sweep had stored it
    clock.now += 11
    assert await lifecycle.sweep() == 1
    assert lifecycle.resolutions == 0  # the row existed: not stored twice
    assert await lifecycle.store.timers() == []
    assert len(await _resolutions(db)) == 1
    await inbox.close()


async def test_an_inbox_row_stored_in_a_failed_transaction_is_neither_kept_nor_announced(db: str) -> None:
    """The seam a sweep relies on: the inbox row and the timer's deletion commit or roll back together."""

    class Failed(Exception):
        pass

    inbox = open_store(db)
    await inbox.open()
    committed: list[InboxRow] = []
    inbox.set_on_committed(committed.extend)
    if isinstance(inbox, PostgresInbox):

        async def store(conn: Any, fail: bool) -> None:
            await inbox.insert_in_transaction(conn, "a", "Resolved", b"{}")
            if fail:
                raise Failed

        with pytest.raises(Failed):
            await inbox.run_in_transaction(lambda conn: store(conn, True))
        await inbox.run_in_transaction(lambda conn: store(conn, False))
    else:
        assert isinstance(inbox, Inbox)
        sqlite_inbox = inbox

        def store_sqlite(conn: Any, fail: bool) -> None:
            sqlite_inbox.insert_in_transaction(conn, "a", "Resolved", b"{}")
            if fail:
                raise Failed

        with pytest.raises(Failed):
            await inbox.run_in_transaction(lambda conn: store_sqlite(conn, True))
        await inbox.run_in_transaction(lambda conn: store_sqlite(conn, False))
    [row] = committed  # only the committed one reached the dispatcher
    assert [r.id for r in await inbox.pending()] == [row.id]
    assert inbox.depth() == 1
    await inbox.close()


# -- PostgreSQL: several replicas ----------------------------------------------------------------


async def test_replicas_sweeping_at_once_store_each_due_timer_once(postgres_url: str) -> None:
    clock = Clock()
    opened = [await _opened(postgres_url, clock, stateless_ttl=5) for _ in range(3)]
    first = opened[0][1]
    for n in range(40):
        await _applied(first, _event(n, service="Resource Health", key=f"k{n}"))
    clock.now += 6
    swept = await asyncio.gather(*(lifecycle.sweep() for _, lifecycle, _ in opened for _ in range(3)))
    assert sum(swept) == 40  # SKIP LOCKED: each timer taken by one sweep
    assert sum(lifecycle.resolutions for _, lifecycle, _ in opened) == 40
    assert len(await _resolutions(postgres_url)) == 40
    for inbox, _, _ in opened:
        await inbox.close()


async def test_the_next_lease_holder_continues_the_flap_count(postgres_url: str) -> None:
    clock = Clock()
    (inbox_a, a, _), (inbox_b, b, _) = [
        await _opened(postgres_url, clock, flap_cycles=2, flap_quiet=60) for _ in range(2)
    ]
    for n, holder in ((1, a), (2, a), (3, b)):  # the lease moved to b after two cycles
        await _applied(holder, _event(n))
        clock.now += 10
        last = await _applied(holder, _event(n, "Resolved"))
    assert last.hold is not None and "3 fire/resolve cycles" in last.hold
    await inbox_a.close()
    clock.now += 61
    assert await b.sweep() == 1
    await inbox_b.close()
