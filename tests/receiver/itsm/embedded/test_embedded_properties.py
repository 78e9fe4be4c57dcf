"""Embedded backend under any delivery order with retries: no duplicate, no orphan open item."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.alerts.events import AlertEvent
from receiver.itsm.embedded.queries import list_work_items
from tests.receiver.itsm.embedded.test_embedded import apply_all, fired, resolved

ALERTS = ("a1", "a2", "a3")


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[bool, list[AlertEvent]]:
    """Every alert fired and resolved, shuffled, with some deliveries repeated (Azure retries)."""
    grouped = draw(st.booleans())
    events: list[AlertEvent] = []
    for index, alert in enumerate(ALERTS):
        key = "cpu-high|vm-web-01" if grouped else None
        events.append(fired(alert, key=key, minutes=index))
        events.append(resolved(alert, key=key, minutes=10 + index))
    repeats = draw(st.lists(st.sampled_from(events), max_size=4))
    return grouped, draw(st.permutations(events + repeats))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_any_order_and_any_retries_leave_every_alert_resolved_exactly_once(
    case: tuple[bool, list[AlertEvent]],
) -> None:
    grouped, events = case
    with tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "s.db"
        apply_all(db, events)
        items = list_work_items(str(db))

    assert all(item["state"] == "Resolved" for item in items), items
    assert all(item["resolved_at"] for item in items)
    alert_ids = [alert for item in items for alert in item["alert_ids"]]
    assert sorted(alert_ids) == sorted(fired(alert).alert_id for alert in ALERTS)
    assert sum(item["occurrences"] for item in items) == len(ALERTS)
    if not grouped:
        assert len(items) == len(ALERTS)
    numbers = [item["number"] for item in items]
    assert numbers == [f"INC{n:07d}" for n in range(1, len(items) + 1)]
