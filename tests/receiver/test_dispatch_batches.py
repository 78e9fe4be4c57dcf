"""Batched dispatching: a backend with ``batch_size`` > 1 gets the head events of several ready
correlation keys in one ``apply_batch`` call; each event still succeeds, fails, retries or parks on
its own, and no key ever has two events in flight or out of order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from receiver.dispatch import Dispatcher, build_event
from receiver.inbox import Inbox, count_by_state
from receiver.itsm.base import AlertEvent
from receiver.itsm.embedded import EmbeddedBackend, list_work_items
from tests.receiver.harness import RecordingBackend, alert_body


class BatchingBackend(RecordingBackend):
    """The recording backend, taking up to 8 events per call; ``broken_calls`` whole calls fail
    (raise), ``short_calls`` return too few outcomes."""

    batch_size = 8

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.broken_calls = 0
        self.short_calls = 0

    async def apply_batch(self, events: Sequence[AlertEvent]) -> list[BaseException | None]:
        self.batches.append([event.correlation_key for event in events])
        if self.broken_calls:
            self.broken_calls -= 1
            raise ConnectionResetError("the whole call failed")
        outcomes = await super().apply_batch(events)
        if self.short_calls:
            self.short_calls -= 1
            return outcomes[:-1]
        return outcomes


async def _fill(inbox: Inbox, deliveries: list[tuple[str, str]]) -> None:
    for name, condition in deliveries:
        body = alert_body(name, condition)
        await inbox.put(body["data"]["essentials"]["alertId"], condition, json.dumps(body).encode())


def _run(db: str, backend: RecordingBackend, deliveries: list[tuple[str, str]], **options: object) -> Dispatcher:
    async def scenario() -> Dispatcher:
        inbox = Inbox(db)
        settings = {"backoff_base": 0.005, "backoff_cap": 0.02, **options}
        dispatcher = Dispatcher(inbox, backend, **settings)  # type: ignore[arg-type]
        inbox.set_on_committed(dispatcher.notify)
        await inbox.open()
        # Stored before dispatching starts, as after an outage or a restart: many keys are ready at once.
        await _fill(inbox, deliveries)
        await dispatcher.start()
        for _ in range(2000):
            if inbox.depth() == 0:
                break
            await asyncio.sleep(0.01)
        await dispatcher.stop()
        await inbox.close()
        return dispatcher

    return asyncio.run(scenario())


def _alert_id(name: str) -> str:
    return str(alert_body(name)["data"]["essentials"]["alertId"])


def test_batches_keep_order_per_key_and_each_event_fails_on_its_own(tmp_path: Path) -> None:
    db = str(tmp_path / "batches.db")
    backend = BatchingBackend()
    backend.delay = 0.002
    backend.permanent_for = {_alert_id("b3"), _alert_id("b17")}
    backend.fail_transient(6)
    deliveries = []
    for n in range(40):
        deliveries += [(f"b{n}", "Fired"), (f"b{n}", "Resolved")]

    dispatcher = _run(db, backend, deliveries, concurrency=2, max_attempts=10_000)

    # The two refused alerts park both their events; everything else is applied exactly once.
    assert count_by_state(db) == {"pending": 0, "done": 76, "parked": 4}
    assert dispatcher.parked == 4 and len(backend.applied) == 76
    for n in range(40):
        if n in (3, 17):
            continue
        assert [c for a, c in backend.applied if a == _alert_id(f"b{n}")] == ["Fired", "Resolved"]
    assert not backend.overlapping_key
    assert max(len(batch) for batch in backend.batches) > 1, "events were never batched"
    assert all(len(batch) <= 8 and len(set(batch)) == len(batch) for batch in backend.batches)


def test_a_failed_batch_call_retries_every_event_of_it(tmp_path: Path) -> None:
    db = str(tmp_path / "broken.db")
    backend = BatchingBackend()
    backend.broken_calls = 3
    deliveries = [(f"x{n}", "Fired") for n in range(20)]

    dispatcher = _run(db, backend, deliveries, max_attempts=10_000)

    assert count_by_state(db) == {"pending": 0, "done": 20, "parked": 0}
    assert dispatcher.failures >= 3
    assert sorted(a for a, _ in backend.applied) == sorted(_alert_id(f"x{n}") for n in range(20))


def test_outcomes_that_do_not_match_the_events_are_not_trusted(tmp_path: Path) -> None:
    # A batch answered with too few outcomes cannot say which event failed: none is marked done
    # on its word, every event of that call is tried again (replays are idempotent).
    db = str(tmp_path / "short.db")
    backend = BatchingBackend()
    backend.short_calls = 2
    deliveries = [(f"s{n}", "Fired") for n in range(12)]

    dispatcher = _run(db, backend, deliveries, max_attempts=10_000)

    assert count_by_state(db) == {"pending": 0, "done": 12, "parked": 0}
    assert dispatcher.failures >= 2
    assert len(backend.calls) > 12  # the events of the short calls were sent again


def test_embedded_apply_batch_applies_each_event_once_and_replays_change_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "embedded.db")
    events = [
        build_event(json.dumps(alert_body(f"e{n}", condition)).encode(), "alert")
        for n in range(5)
        for condition in ("Fired", "Resolved")
    ]
    fired = events[0::2]
    resolved = events[1::2]

    async def scenario() -> list[list[BaseException | None]]:
        backend = EmbeddedBackend(db)
        await backend.start()
        try:
            return [
                await backend.apply_batch(fired),
                await backend.apply_batch(fired),  # a replay of the whole batch
                await backend.apply_batch(resolved),
            ]
        finally:
            await backend.close()

    outcomes = asyncio.run(scenario())
    assert outcomes == [[None] * 5] * 3
    items = list_work_items(db)
    assert len(items) == 5
    assert {item["state"] for item in items} == {"Resolved"}
    assert all(item["occurrences"] == 1 for item in items)
