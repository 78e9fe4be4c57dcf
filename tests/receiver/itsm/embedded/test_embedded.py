"""Embedded backend: every bullet of issue #3 point 5, against a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from receiver.alerts.events import AlertEvent, Condition
from receiver.itsm.base import PermanentBackendError, TransientBackendError
from receiver.itsm.embedded import store as embedded_store
from receiver.itsm.embedded.queries import list_configuration_items, list_work_items
from receiver.itsm.embedded.store import EmbeddedBackend
from receiver.storage.records import WorkItemRef
from receiver.storage.sqlite.connection import DatabaseNotFoundError

SUB = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"
VM_ID = f"{SUB}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-web-01"
T0 = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)

WORK_ITEM_FIELDS = {
    "id",
    "number",
    "correlation_key",
    "alert_ids",
    "state",
    "severity",
    "priority",
    "title",
    "description",
    "configuration_items",
    "opened_at",
    "resolved_at",
    "occurrences",
    "notes",
    # routed fields and the reopen count (docs/design.md)
    "assignment_group",
    "category",
    "subcategory",
    "impact",
    "urgency",
    "reopened",
}
CI_FIELDS = {"id", "name", "azure_resource_id", "first_seen", "last_seen"}

pytestmark = pytest.mark.anyio


def fired(alert: str = "a1", *, key: str | None = None, minutes: int = 0, **changes: Any) -> AlertEvent:
    event = AlertEvent(
        alert_id=f"{SUB}/providers/Microsoft.AlertsManagement/alerts/{alert}",
        condition=Condition.FIRED,
        correlation_key=key or f"{SUB}/providers/Microsoft.AlertsManagement/alerts/{alert}",
        rule="cpu-high",
        severity="Sev2",
        signal_type="Metric",
        monitoring_service="Platform",
        target_ids=(VM_ID,),
        configuration_items=("vm-web-01",),
        description="CPU above 80% for 5 minutes",
        fired_at=T0 + timedelta(minutes=minutes),
        investigation_link="https://portal.azure.com/#view/alert/a1",
        condition_summary="Percentage CPU Average GreaterThan 80 (value 93.5)",
    )
    return replace(event, **changes)


def resolved(alert: str = "a1", *, key: str | None = None, minutes: int = 10, **changes: Any) -> AlertEvent:
    base = fired(alert, key=key, **changes)
    return replace(
        base,
        condition=Condition.RESOLVED,
        fired_at=base.fired_at,
        resolved_at=T0 + timedelta(minutes=minutes),
    )


async def apply_each(db: Path, events: Iterable[AlertEvent], **kwargs: Any) -> None:
    """Apply ``events`` one after the other through a backend on ``db``."""
    backend = EmbeddedBackend(str(db), **kwargs)
    await backend.start()
    try:
        for event in events:
            await backend.apply(event)
    finally:
        await backend.close()


def apply_all(db: Path, events: Iterable[AlertEvent], **kwargs: Any) -> None:
    """:func:`apply_each` for synchronous tests (those that drive the CLI in a child process)."""
    asyncio.run(apply_each(db, events, **kwargs))


async def test_fired_creates_a_work_item_with_the_design_fields(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await apply_each(db, [fired()])

    [item] = list_work_items(str(db))
    assert set(item) == WORK_ITEM_FIELDS
    assert item["number"] == "INC0000001"
    assert item["state"] == "New"
    assert item["severity"] == "Sev2"
    assert item["priority"] == 3
    assert "cpu-high" in item["title"] and "Sev2" in item["title"]
    assert VM_ID in item["description"]
    assert "Percentage CPU Average GreaterThan 80" in item["description"]
    assert "https://portal.azure.com/#view/alert/a1" in item["description"]
    assert item["alert_ids"] == [fired().alert_id]
    assert item["correlation_key"] == fired().alert_id
    assert item["configuration_items"] == ["vm-web-01"]
    assert item["opened_at"] == "2026-11-26T06:00:00.000Z"
    assert item["resolved_at"] is None
    assert item["occurrences"] == 1
    assert len(item["notes"]) == 1 and "Opened" in item["notes"][0]


async def test_numbers_count_up_per_work_item(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await apply_each(db, [fired("a1"), fired("a2"), fired("a3")])
    assert [item["number"] for item in list_work_items(str(db))] == ["INC0000001", "INC0000002", "INC0000003"]


@pytest.mark.parametrize(
    ("severity", "priority"), [("Sev0", 1), ("Sev1", 2), ("Sev2", 3), ("Sev3", 4), ("Sev4", 5), (None, 3)]
)
async def test_default_priority_map(tmp_path: Path, severity: str | None, priority: int) -> None:
    db = tmp_path / "s.db"
    await apply_each(db, [fired(severity=severity)])
    [item] = list_work_items(str(db))
    assert (item["severity"], item["priority"]) == (severity, priority)
    assert (severity or "No severity") in item["title"]


async def test_priority_map_is_configurable(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await apply_each(
        db,
        [fired("a1", severity="Sev4"), fired("a2", severity=None)],
        priority_map={"Sev4": 3, "default": 5},
    )
    assert [item["priority"] for item in list_work_items(str(db))] == [3, 5]


def test_invalid_priority_maps_are_refused_with_the_bad_entry_named() -> None:
    with pytest.raises(ValueError, match="Sev9"):
        EmbeddedBackend("unused.db", priority_map={"Sev9": 1})
    with pytest.raises(ValueError, match=r"1\.\.5"):
        EmbeddedBackend("unused.db", priority_map={"Sev0": 0})
    with pytest.raises(ValueError, match="integer"):
        EmbeddedBackend("unused.db", priority_map={"Sev1": "high"})


async def test_resolved_resolves_with_a_note_and_resolved_at(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await apply_each(db, [fired(), resolved(minutes=12)])

    [item] = list_work_items(str(db))
    assert item["state"] == "Resolved"
    assert item["resolved_at"] == "2026-11-26T06:12:00.000Z"
    assert "Resolved by Azure Monitor" in item["notes"][-1]


async def test_resolved_before_fired_never_leaves_an_open_item(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await apply_each(db, [resolved(minutes=7)])
    assert list_work_items(str(db)) == []

    await apply_each(db, [fired()])
    [item] = list_work_items(str(db))
    assert item["state"] == "Resolved"
    assert item["resolved_at"] == "2026-11-26T06:07:00.000Z"
    assert any("arrived before this Fired" in note for note in item["notes"])


async def test_resolved_for_an_unknown_alert_opens_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await apply_each(db, [fired("a1"), resolved("never-fired")])
    [item] = list_work_items(str(db))
    assert item["alert_ids"] == [fired("a1").alert_id]
    assert item["state"] == "New"


async def test_repeated_deliveries_change_nothing(tmp_path: Path) -> None:
    once, twice = tmp_path / "once.db", tmp_path / "twice.db"
    events = [fired("a1"), fired("a2"), resolved("a1")]
    await apply_each(once, events)
    await apply_each(twice, [e for event in events for e in (event, event)] + events)

    def strip_times(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Notes carry the time they were written; everything else must be identical.
        return [{**item, "notes": [note.split(" ", 1)[1] for note in item["notes"]]} for item in items]

    assert strip_times(list_work_items(str(twice))) == strip_times(list_work_items(str(once)))
    assert list_configuration_items(str(twice)) == list_configuration_items(str(once))


async def test_replay_of_a_resolved_after_refire_does_not_resolve_the_new_item(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    key = "cpu-high|vm-web-01"
    await apply_each(db, [fired("a1", key=key), resolved("a1", key=key), fired("a2", key=key), resolved("a1", key=key)])
    first, second = list_work_items(str(db))
    assert (first["state"], second["state"]) == ("Resolved", "New")


async def test_rule_target_groups_occurrences_and_resolves_when_all_instances_resolved(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    key = "cpu-high|" + VM_ID.lower()
    await apply_each(db, [fired("a1", key=key), fired("a2", key=key, minutes=3)])
    [item] = list_work_items(str(db))
    assert item["occurrences"] == 2
    assert item["correlation_key"] == key
    assert item["alert_ids"] == [fired("a1").alert_id, fired("a2").alert_id]
    assert any("New occurrence" in note for note in item["notes"])

    await apply_each(db, [resolved("a1", key=key)])
    [item] = list_work_items(str(db))
    assert item["state"] == "New"
    assert "still firing" in item["notes"][-1]

    await apply_each(db, [resolved("a2", key=key, minutes=20)])
    [item] = list_work_items(str(db))
    assert item["state"] == "Resolved"
    assert item["resolved_at"] == "2026-11-26T06:20:00.000Z"

    await apply_each(db, [fired("a3", key=key, minutes=30)])
    old, new = list_work_items(str(db))
    assert old["state"] == "Resolved"
    assert (new["number"], new["state"], new["occurrences"]) == ("INC0000002", "New", 1)


async def test_rule_target_instance_resolved_early_does_not_hold_the_group_open(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    key = "cpu-high|vm"
    await apply_each(db, [fired("a1", key=key), resolved("a2", key=key), fired("a2", key=key), resolved("a1", key=key)])
    [item] = list_work_items(str(db))
    assert item["occurrences"] == 2
    assert item["state"] == "Resolved"


async def test_ci_binding_matches_names_case_insensitively_and_takes_the_resource_id(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    other_id = f"{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stdata"
    await apply_each(
        db,
        [
            fired("a1", configuration_items=("VM-WEB-01", "unmatched-host"), minutes=0),
            fired("a2", configuration_items=("vm-web-01", "stData"), target_ids=(VM_ID, other_id), minutes=5),
            fired("a3", configuration_items=("unmatched-host",), target_ids=(), minutes=2),
        ],
    )
    cis = list_configuration_items(str(db))
    assert all(set(ci) == CI_FIELDS for ci in cis)
    by_name = {ci["name"]: ci for ci in cis}
    assert set(by_name) == {"VM-WEB-01", "unmatched-host", "stData"}
    assert by_name["VM-WEB-01"]["azure_resource_id"] == VM_ID
    assert by_name["VM-WEB-01"]["first_seen"] == "2026-11-26T06:00:00.000Z"
    assert by_name["VM-WEB-01"]["last_seen"] == "2026-11-26T06:05:00.000Z"
    assert by_name["stData"]["azure_resource_id"] == other_id
    assert by_name["unmatched-host"]["azure_resource_id"] is None
    assert by_name["unmatched-host"]["last_seen"] == "2026-11-26T06:02:00.000Z"

    items = list_work_items(str(db))
    assert items[0]["configuration_items"] == ["VM-WEB-01", "unmatched-host"]
    assert items[1]["configuration_items"] == ["VM-WEB-01", "stData"]


async def test_ci_keeps_a_known_resource_id_and_late_events_do_not_move_last_seen_back(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await apply_each(db, [fired("a1", minutes=10), fired("a2", minutes=1, target_ids=()), resolved("a1", minutes=30)])
    [ci] = list_configuration_items(str(db))
    assert ci["azure_resource_id"] == VM_ID
    assert ci["first_seen"] == "2026-11-26T06:01:00.000Z"
    assert ci["last_seen"] == "2026-11-26T06:30:00.000Z"


def test_list_functions_refuse_a_missing_database_without_creating_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(DatabaseNotFoundError):
        list_work_items(str(missing))
    with pytest.raises(DatabaseNotFoundError):
        list_configuration_items(str(missing))
    assert not missing.exists()


def test_a_database_without_backend_tables_lists_nothing(tmp_path: Path) -> None:
    db = tmp_path / "inbox-only.db"
    sqlite3.connect(db).execute("CREATE TABLE inbox (id INTEGER)").connection.close()
    assert list_work_items(str(db)) == []
    assert list_configuration_items(str(db)) == []


async def test_apply_waits_for_another_writer_on_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "s.db"
    await apply_each(db, [fired("a1")])
    # The lock poll's sleep says "found the lock taken, waiting": the test waits for that, not for time.
    import receiver.storage.sqlite.write_lock as write_lock

    polling = threading.Event()
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        polling.set()
        real_sleep(seconds)

    monkeypatch.setattr(write_lock, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))

    backend = EmbeddedBackend(str(db))
    await backend.start()
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    try:
        pending = asyncio.create_task(backend.apply(fired("a2")))
        assert await asyncio.to_thread(polling.wait, 10), "apply never found the write lock taken"
        assert not pending.done()  # blocked on the other writer's lock, not failed
        other.execute("COMMIT")
        await pending
    finally:
        other.close()
        await backend.close()
    assert len(list_work_items(str(db))) == 2


async def test_readiness_reports_an_unwritable_database(tmp_path: Path) -> None:
    good = EmbeddedBackend(str(tmp_path / "s.db"))
    await good.start()
    assert (await good.readiness()).ready
    await good.close()
    bad = EmbeddedBackend(str(tmp_path / "missing-dir" / "s.db"))
    not_ready = await bad.readiness()
    await bad.close()
    assert not not_ready.ready and "SECURE_EXPORT_DB" in not_ready.reason


async def test_bad_database_path_is_permanent_at_start_and_transient_per_event(tmp_path: Path) -> None:
    backend = EmbeddedBackend(str(tmp_path / "missing-dir" / "s.db"))
    try:
        with pytest.raises(PermanentBackendError, match="SECURE_EXPORT_DB"):
            await backend.start()
        with pytest.raises(TransientBackendError):
            await backend.apply(fired())
    finally:
        await backend.close()


async def test_a_failure_mid_event_leaves_nothing_half_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "s.db"

    def broken(event: AlertEvent) -> list[tuple[str, str | None]]:
        raise RuntimeError("disk went away while binding CIs")

    backend = EmbeddedBackend(str(db))
    try:
        with monkeypatch.context() as patch:
            # CIs are bound after the work item was written: the failure comes mid-event.
            patch.setattr(embedded_store, "ci_bindings", broken)
            with pytest.raises(RuntimeError):
                await backend.apply(fired())
        assert list_work_items(str(db)) == []
        await backend.apply(fired())  # the dispatcher's retry then applies it exactly once
    finally:
        await backend.close()
    [item] = list_work_items(str(db))
    assert item["number"] == "INC0000001"


async def test_concurrent_events_share_transactions_and_a_failing_one_fails_alone(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    events = [fired(f"c{i}") for i in range(120)]
    events[60] = replace(fired("bad"), condition="Bogus")  # type: ignore[arg-type]  # fails inside the batch

    backend = EmbeddedBackend(str(db))
    await backend.start()
    try:
        results = await asyncio.gather(*(backend.apply(event) for event in events), return_exceptions=True)
    finally:
        await backend.close()
    assert isinstance(results[60], ValueError)
    numbers = [ref.number for ref in results if isinstance(ref, WorkItemRef)]
    assert len(numbers) == 119 and len(set(numbers)) == 119
    assert backend.transactions < 119  # events queued together were applied together
    items = list_work_items(str(db))
    assert sorted(item["number"] for item in items) == sorted(numbers)
    assert fired("bad").alert_id not in {alert for item in items for alert in item["alert_ids"]}
