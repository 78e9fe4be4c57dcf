"""The dispatcher with a real inbox: events, correlation keys, order per key, bounded concurrency."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.alerts.events import Condition, correlation_key, event_from_body
from receiver.alerts.schema import Essentials
from receiver.dispatch.dispatcher import Dispatcher
from receiver.storage.records import InboxRow
from receiver.storage.sqlite.inbox import Inbox, count_by_state
from tests.support.alerts import alert_body
from tests.support.backends import RecordingBackend

pytestmark = pytest.mark.anyio


def test_build_event_maps_the_essentials() -> None:
    body = alert_body("map", "Resolved")
    event = event_from_body(json.dumps(body).encode(), "alert")
    essentials = body["data"]["essentials"]
    assert event.alert_id == essentials["alertId"]
    assert event.correlation_key == essentials["alertId"]
    assert event.condition is Condition.RESOLVED
    assert event.rule == "cpu-high"
    assert event.severity == "Sev2"
    assert event.signal_type == "Metric" and event.monitoring_service == "Platform"
    assert event.target_ids == tuple(essentials["alertTargetIDs"])
    assert event.configuration_items == ("vm-app-01",)
    # Azure sends seven fractional digits; they still parse (to microseconds, UTC).
    assert event.fired_at == datetime(2026, 11, 26, 6, 0, 0, 123456, tzinfo=UTC)
    assert event.resolved_at == datetime(2026, 11, 26, 6, 10, tzinfo=UTC)
    assert event.condition_summary and "Percentage CPU" in event.condition_summary
    assert event.essentials["alertRule"] == "cpu-high"


def test_build_event_tolerates_nulls() -> None:
    body = alert_body("nulls")
    essentials = body["data"]["essentials"]
    essentials.update(severity=None, alertTargetIDs=None, configurationItems=None, firedDateTime=None, alertRule=None)
    event = event_from_body(json.dumps(body).encode(), "rule-target")
    assert event.severity is None and event.target_ids == () and event.fired_at is None and event.rule == ""
    assert event.correlation_key == essentials["alertId"]  # nothing to group by: the alert itself


def test_rule_target_key_is_normalised() -> None:
    first = {
        "monitorCondition": "Fired",
        "alertId": "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/1",
        "alertRule": "CPU-High",
        "alertTargetIDs": ["/subscriptions/S/resourceGroups/RG/vm/B", "/subscriptions/s/resourcegroups/rg/vm/a"],
    }
    second = {
        "monitorCondition": "Fired",
        "alertId": "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/2",
        "alertRule": "cpu-high",
        "alertTargetIDs": ["/subscriptions/s/resourcegroups/rg/vm/a", "/subscriptions/s/resourcegroups/rg/vm/b"],
    }
    assert correlation_key(Essentials.model_validate(first), "rule-target") == correlation_key(
        Essentials.model_validate(second), "rule-target"
    )
    assert (
        correlation_key(Essentials.model_validate(first), "rule-target")
        == "cpu-high|/subscriptions/s/resourcegroups/rg/vm/a,/subscriptions/s/resourcegroups/rg/vm/b"
    )
    assert correlation_key(Essentials.model_validate(first), "alert") != correlation_key(
        Essentials.model_validate(second), "alert"
    )
    with_rule_id = dict(
        first, alertRuleID="/subscriptions/s/resourceGroups/rg/providers/microsoft.insights/metricAlerts/CPU-High"
    )
    assert correlation_key(Essentials.model_validate(with_rule_id), "rule-target").startswith(
        "/subscriptions/s/resourcegroups/rg/providers/microsoft.insights/metricalerts/cpu-high|"
    )


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    high = Dispatcher(None, RecordingBackend(), backoff_base=1.0, backoff_cap=60.0, rng=lambda: 1.0)
    assert [high.backoff(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    low = Dispatcher(None, RecordingBackend(), backoff_base=1.0, backoff_cap=60.0, rng=lambda: 0.0)
    assert low.backoff(5) == 0.0
    assert high.backoff(1, retry_after=30.0) == 30.0
    assert high.backoff(1, retry_after=3600.0) == 60.0  # a Retry-After is capped too
    assert high.backoff(10_000) == 60.0  # no overflow on huge attempt numbers


async def _fill(inbox: Inbox, deliveries: list[tuple[str, str]]) -> None:
    for name, condition in deliveries:
        await inbox.put(
            alert_body(name, condition)["data"]["essentials"]["alertId"],
            condition,
            json.dumps(alert_body(name, condition)).encode(),
        )


async def test_order_per_key_and_bounded_concurrency(tmp_path: Path) -> None:
    db = str(tmp_path / "dispatch.db")
    backend = RecordingBackend()
    backend.delay = 0.005
    deliveries = []
    for n in range(40):
        deliveries += [(f"k{n}", "Fired"), (f"k{n}", "Resolved")]

    inbox = Inbox(db)
    dispatcher = Dispatcher(inbox, backend, concurrency=4, backoff_base=0.01, backoff_cap=0.05)
    inbox.set_on_committed(dispatcher.notify)
    await inbox.open()
    await dispatcher.start()
    backend.fail_transient(10)  # some failures on the way: order must still hold
    await _fill(inbox, deliveries)
    for _ in range(1000):
        if inbox.depth() == 0:
            break
        await asyncio.sleep(0.01)
    await dispatcher.stop()
    await inbox.close()

    assert count_by_state(db) == {"pending": 0, "done": 80, "parked": 0}
    assert len(backend.applied) == 80
    for n in range(40):
        alert_id = alert_body(f"k{n}")["data"]["essentials"]["alertId"]
        mine = [condition for a, condition in backend.applied if a == alert_id]
        assert mine == ["Fired", "Resolved"]
    assert not backend.overlapping_key
    assert 1 < backend.max_concurrent <= 4


async def test_rule_target_mode_serialises_one_group(tmp_path: Path) -> None:
    db = str(tmp_path / "dispatch.db")
    backend = RecordingBackend()
    backend.delay = 0.005
    # Ten alert instances of one rule on one target: one correlation key, applied one by one in order.
    deliveries = [(f"g{n}", "Fired") for n in range(10)]

    inbox = Inbox(db)
    dispatcher = Dispatcher(inbox, backend, correlation="rule-target", concurrency=8)
    inbox.set_on_committed(dispatcher.notify)
    await inbox.open()
    await dispatcher.start()
    await _fill(inbox, deliveries)
    for _ in range(1000):
        if inbox.depth() == 0:
            break
        await asyncio.sleep(0.01)
    await dispatcher.stop()
    await inbox.close()

    assert [a.rsplit("/", 1)[1] for a, _ in backend.applied] == [f"test-g{n}" for n in range(10)]
    assert backend.max_concurrent == 1
    assert len({event.correlation_key for event in backend.events}) == 1


async def test_stop_leaves_unconfirmed_rows_pending(tmp_path: Path) -> None:
    db = str(tmp_path / "dispatch.db")
    backend = RecordingBackend()
    backend.outage()

    inbox = Inbox(db)
    dispatcher = Dispatcher(inbox, backend, backoff_base=0.01, backoff_cap=0.02, max_attempts=10_000)
    inbox.set_on_committed(dispatcher.notify)
    await inbox.open()
    await dispatcher.start()
    await _fill(inbox, [("s1", "Fired"), ("s2", "Fired")])
    while len(backend.calls) < 4:
        await asyncio.sleep(0.01)
    await dispatcher.stop(grace=1.0)
    await inbox.close()

    counts = count_by_state(db)
    assert counts == {"pending": 2, "done": 0, "parked": 0}


async def test_backend_that_cannot_start_is_retried_while_rows_wait(tmp_path: Path) -> None:
    db = str(tmp_path / "dispatch.db")

    class SlowStarter(RecordingBackend):
        start_failures = 3

        async def start(self) -> None:
            if self.start_failures:
                self.start_failures -= 1
                raise ConnectionError("ITSM tool unreachable")
            await super().start()

    backend = SlowStarter()

    inbox = Inbox(db)
    dispatcher = Dispatcher(inbox, backend, backoff_base=0.01, backoff_cap=0.02)
    inbox.set_on_committed(dispatcher.notify)
    await inbox.open()
    await dispatcher.start()
    errors = [dispatcher.backend_error]
    await _fill(inbox, [("late", "Fired")])
    while inbox.depth():
        await asyncio.sleep(0.01)
    errors.append(dispatcher.backend_error)
    await dispatcher.stop()
    await inbox.close()

    assert errors[0] and "ITSM tool unreachable" in errors[0]
    assert errors[1] is None
    assert backend.started
    assert backend.applied == [(alert_body("late")["data"]["essentials"]["alertId"], "Fired")]


async def test_backlog_beyond_memory_limit_is_read_back_in_order(tmp_path: Path) -> None:
    db = str(tmp_path / "dispatch.db")
    backend = RecordingBackend()
    backend.outage()
    deliveries = []
    for n in range(15):
        deliveries += [(f"b{n}", "Fired"), (f"b{n}", "Resolved")]

    inbox = Inbox(db)
    dispatcher = Dispatcher(
        inbox, backend, max_in_memory=4, concurrency=2, backoff_base=0.005, backoff_cap=0.01, max_attempts=10_000
    )
    inbox.set_on_committed(dispatcher.notify)
    await inbox.open()
    await dispatcher.start()
    await _fill(inbox, deliveries)
    while len(backend.calls) < 20:
        await asyncio.sleep(0.01)
    peak = dispatcher.in_memory()
    backend.recover()
    for _ in range(1000):
        if inbox.depth() == 0:
            break
        await asyncio.sleep(0.01)
    await dispatcher.stop()
    await inbox.close()

    assert peak <= 4  # the rest waited on disk
    assert count_by_state(db) == {"pending": 0, "done": 30, "parked": 0}
    assert len(backend.applied) == 30 and len(set(backend.applied)) == 30
    for n in range(15):
        alert_id = alert_body(f"b{n}")["data"]["essentials"]["alertId"]
        assert [c for a, c in backend.applied if a == alert_id] == ["Fired", "Resolved"]


class _ScriptedInbox:
    """An inbox whose reads the test releases by hand, to replay one interleaving exactly.

    ``rows`` is the disk (pending rows by id); each ``pending()`` call waits until the test
    answers it from ``reads``; ``commit()`` stores a row and tells the dispatcher, as the real
    inbox does after a commit.
    """

    def __init__(self) -> None:
        self.rows: dict[int, InboxRow] = {}
        self.reads: asyncio.Queue[tuple[int, asyncio.Future[list[InboxRow]]]] = asyncio.Queue()
        self.dispatcher: Dispatcher | None = None

    def commit(self, row_id: int) -> InboxRow:
        body = alert_body(f"r{row_id}")
        row = InboxRow(row_id, body["data"]["essentials"]["alertId"], "Fired", json.dumps(body).encode(), "t", 0, None)
        self.rows[row_id] = row
        return row

    def snapshot(self, after_id: int) -> list[InboxRow]:
        return [self.rows[row_id] for row_id in sorted(self.rows) if row_id > after_id]

    async def pending(self, after_id: int = 0, limit: int = 500) -> list[InboxRow]:
        answer: asyncio.Future[list[InboxRow]] = asyncio.get_running_loop().create_future()
        await self.reads.put((after_id, answer))
        return (await answer)[:limit]

    def mark_done_soon(self, *row_ids: int) -> asyncio.Future[None]:
        for row_id in row_ids:
            self.rows.pop(row_id, None)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_rows_committed_while_the_loader_catches_up_are_never_skipped() -> None:
    # The interleaving a storm produced: a commit is announced after the loader's read ran but
    # before the loader resumed (so the read missed it and the announcement only woke the loader);
    # during the loader's next read another commit is announced. Taking that second commit
    # straight from memory must not make the loader skip the first one.
    backend = RecordingBackend()

    inbox = _ScriptedInbox()
    dispatcher = Dispatcher(inbox, backend)
    for row_id in (1, 2, 3):
        inbox.commit(row_id)
    await dispatcher.start()
    after_id, answer = await inbox.reads.get()
    answer.set_result(inbox.snapshot(after_id))  # the read saw rows 1-3 ...
    dispatcher.notify([inbox.commit(4)])  # ... row 4 is announced before the loader resumes
    after_id, answer = await inbox.reads.get()
    dispatcher.notify([inbox.commit(5)])  # announced while the next read is in flight
    answer.set_result(inbox.snapshot(after_id))
    for _ in range(500):
        while not inbox.reads.empty():
            after_id, answer = inbox.reads.get_nowait()
            answer.set_result(inbox.snapshot(after_id))
        if not inbox.rows:
            break
        await asyncio.sleep(0.01)
    left = sorted(inbox.rows)
    await dispatcher.stop(grace=1.0)

    assert left == [], f"rows {left} were never dispatched"
    # Each row exactly once: five keys, so only the order across keys may vary.
    assert sorted(backend.applied) == sorted(
        (alert_body(f"r{n}")["data"]["essentials"]["alertId"], "Fired") for n in range(1, 6)
    )


async def test_the_recording_backend_shows_a_replay_and_a_fired_after_its_resolved() -> None:
    """The tests above compare ``backend.applied`` with exact sequences, so it must keep repeats."""
    backend = RecordingBackend()
    fired, resolved = (event_from_body(json.dumps(alert_body("r", c)).encode(), "alert") for c in ("Fired", "Resolved"))

    for event in (fired, resolved, fired, fired):
        await backend.apply(event)

    alert_id = fired.alert_id
    assert backend.applied == [(alert_id, "Fired"), (alert_id, "Resolved"), (alert_id, "Fired"), (alert_id, "Fired")]
    assert backend.events == [fired, resolved, fired, fired]
