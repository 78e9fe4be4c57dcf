"""Routing and the work-item lifecycle on the embedded backend, through a real receiver over HTTP.

Reopen window, closed items never reopened, flap damping with its quiet period, stateless TTL
(including a restart in the middle of it), resource health recovery; each in both correlation modes
where the mode changes what happens.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from receiver.demo.local_issuer import LocalIssuer
from receiver.itsm.embedded.operations import close_work_item
from receiver.itsm.embedded.queries import list_work_items
from tests.support.alerts import alert_body
from tests.support.receivers import RunningReceiver, start_receiver

ROUTING = """
routes:
  - match: {severity: [Sev0, Sev1], resourceGroup: rg-app}
    set: {assignmentGroup: App On-Call, category: Software, subcategory: Compute, impact: 1, urgency: 1}
  - match: {monitoringService: ["Activity Log - Administrative"]}
    set: {assignmentGroup: Platform Team}
default: {assignmentGroup: Azure Monitor Triage}
"""

MODES = ["alert", "rule-target"]

STORES = ["sqlite", "postgresql"]
"""Tests of rules whose state the lifecycle store keeps run on both stores (the inbox's database)."""


def database(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """``SECURE_EXPORT_DB`` of a fresh database of ``store``."""
    if store == "sqlite":
        return str(tmp_path / "lifecycle.db")
    return str(request.getfixturevalue("postgres_url"))


def body(
    n: int | str,
    condition: str = "Fired",
    *,
    fired: str = "06:00",
    resolved: str = "06:10",
    severity: str = "Sev2",
    service: str | None = None,
    health: str | None = None,
) -> dict[str, Any]:
    document = alert_body(n, condition)
    essentials = document["data"]["essentials"]
    essentials["severity"] = severity
    essentials["firedDateTime"] = f"2026-11-26T{fired}:00Z"
    if condition == "Resolved":
        essentials["resolvedDateTime"] = f"2026-11-26T{resolved}:00Z"
    if service is not None:
        essentials["monitoringService"] = service
        essentials["signalType"] = "Activity Log"
        document["data"]["alertContext"] = {"properties": {"currentHealthStatus": health} if health else {}}
    return document


def send(rx: RunningReceiver, issuer: LocalIssuer, *documents: dict[str, Any]) -> None:
    for document in documents:
        assert rx.post_alert(document, issuer.mint()).status_code == 202
        rx.wait_dispatched()


def items(rx: RunningReceiver) -> list[dict[str, Any]]:
    return list_work_items(rx.db_path)


def receiver(tmp_path: Path, issuer: LocalIssuer, mode: str = "alert", **env: Any) -> RunningReceiver:
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    env.setdefault("lifecycle_sweep_seconds", "0.05")
    return start_receiver(tmp_path, issuer, correlation=mode, routing=str(routing), **env)


# -- routing ----------------------------------------------------------------------------------


def test_routed_fields_reach_the_work_item_and_set_its_priority(tmp_path: Path, issuer: LocalIssuer) -> None:
    with receiver(tmp_path, issuer) as rx:
        send(rx, issuer, body(1, severity="Sev1"), body(2, severity="Sev3"))
        on_call, triage = items(rx)
    assert (on_call["assignment_group"], on_call["category"], on_call["subcategory"]) == (
        "App On-Call",
        "Software",
        "Compute",
    )
    assert (on_call["impact"], on_call["urgency"], on_call["priority"]) == (1, 1, 1)  # the route beats Sev1 → 2
    assert any("Routed to App On-Call by routes[0]" in note for note in on_call["notes"])
    assert (triage["assignment_group"], triage["category"], triage["impact"], triage["priority"]) == (
        "Azure Monitor Triage",
        None,
        None,
        4,  # the default sets no levels: the severity map's Sev3 → 4
    )


def test_without_a_routing_file_items_have_no_group(tmp_path: Path, issuer: LocalIssuer) -> None:
    with start_receiver(tmp_path, issuer) as rx:
        send(rx, issuer, body(1))
        [item] = items(rx)
    assert [item[k] for k in ("assignment_group", "category", "subcategory", "impact", "urgency", "reopened")] == [
        None,
        None,
        None,
        None,
        None,
        0,
    ]


# -- reopen window ----------------------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("mode", MODES)
def test_a_fired_within_the_window_reopens_the_item_azure_resolved(
    tmp_path: Path, issuer: LocalIssuer, mode: str, store: str, request: pytest.FixtureRequest
) -> None:
    with receiver(tmp_path, issuer, mode, db=database(store, tmp_path, request)) as rx:
        send(rx, issuer, body(1), body(1, "Resolved", resolved="06:10"), body(2, fired="06:40"))
        [item] = items(rx)
        assert (item["state"], item["reopened"], item["resolved_at"]) == ("New", 1, None)
        assert len(item["alert_ids"]) == 2
        assert any("Reopened: alert" in note and "30min after Azure resolved" in note for note in item["notes"])
        # The reopened item resolves again with its new alert, and may be reopened again.
        send(rx, issuer, body(2, "Resolved", resolved="06:50"), body(3, fired="07:00"))
        [item] = items(rx)
        assert (item["state"], item["reopened"]) == ("New", 2)
        send(rx, issuer, body(3, "Resolved", resolved="07:05"))
        assert items(rx)[0]["state"] == "Resolved"


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("mode", MODES)
def test_a_fired_after_the_window_opens_a_new_item(
    tmp_path: Path, issuer: LocalIssuer, mode: str, store: str, request: pytest.FixtureRequest
) -> None:
    db = database(store, tmp_path, request)
    with receiver(tmp_path, issuer, mode, reopen_window="PT30M", db=db) as rx:
        send(rx, issuer, body(1), body(1, "Resolved", resolved="06:10"), body(2, fired="06:41"))
        first, second = items(rx)
    assert (first["state"], first["reopened"], second["state"], second["reopened"]) == ("Resolved", 0, "New", 0)


def test_a_window_of_zero_never_reopens(tmp_path: Path, issuer: LocalIssuer) -> None:
    with receiver(tmp_path, issuer, "rule-target", reopen_window="0") as rx:
        send(rx, issuer, body(1), body(1, "Resolved"), body(2, fired="06:11"))
        assert [item["state"] for item in items(rx)] == ["Resolved", "New"]


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("mode", MODES)
def test_an_item_a_person_closed_is_never_reopened(
    tmp_path: Path, issuer: LocalIssuer, mode: str, store: str, request: pytest.FixtureRequest
) -> None:
    with receiver(tmp_path, issuer, mode, db=database(store, tmp_path, request)) as rx:
        send(rx, issuer, body(1), body(1, "Resolved"))
        close_work_item(rx.db_path, "INC0000001", action="close", note="done", by="alice")
        send(rx, issuer, body(2, fired="06:15"))
        old, new = items(rx)
    assert (old["state"], old["reopened"]) == ("Closed", 0)
    assert (new["state"], new["number"]) == ("New", "INC0000002")
    assert any("Follows INC0000001, which a person closed" in note for note in new["notes"])


@pytest.mark.parametrize("mode", MODES)
def test_an_item_a_person_resolved_is_reopened_like_in_servicenow(
    tmp_path: Path, issuer: LocalIssuer, mode: str
) -> None:
    with receiver(tmp_path, issuer, mode) as rx:
        send(rx, issuer, body(1))
        close_work_item(rx.db_path, "INC0000001", action="resolve", note="restarted it", by="alice")
        send(rx, issuer, body(2, fired="06:15"))  # before the person's resolved_at (now): within the window
        [item] = items(rx)
    assert (item["state"], item["reopened"]) == ("New", 1)


# -- flap damping -----------------------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("mode", MODES)
def test_a_flapping_alert_stays_open_and_resolves_after_a_quiet_period(
    tmp_path: Path, issuer: LocalIssuer, mode: str, store: str, request: pytest.FixtureRequest
) -> None:
    db = database(store, tmp_path, request)
    with receiver(tmp_path, issuer, mode, flap_cycles="2", flap_quiet="1", db=db) as rx:
        send(rx, issuer, body(1), body(1, "Resolved", resolved="06:01"))
        send(rx, issuer, body(2, fired="06:02"), body(2, "Resolved", resolved="06:03"))
        assert items(rx)[0]["state"] == "Resolved"  # two cycles: not more than 2 yet
        send(rx, issuer, body(3, fired="06:04"), body(3, "Resolved", resolved="06:05"))
        [item] = items(rx)
        assert item["state"] == "New"  # the third cycle is held open
        assert any(note.split(" ", 1)[1].startswith("Flapping: 3 fire/resolve cycles") for note in item["notes"])
        # A Fired during the quiet period cancels it; the next Resolved is held again.
        send(rx, issuer, body(4, fired="06:06"), body(4, "Resolved", resolved="06:07"))
        assert items(rx)[0]["state"] == "New"
        rx.wait_until(lambda: items(rx)[0]["state"] == "Resolved", 10, "the quiet period to resolve the item")
        [item] = items(rx)
    assert any("no Fired for 1s after flapping" in note for note in item["notes"])
    assert (item["reopened"], item["occurrences"]) == (2, 4)  # the fourth Fired joined the held item
    if mode == "alert":  # a new alert instance joins the held item (rule-target: the same key anyway)
        assert any("Fired again while flapping" in note for note in item["notes"])


# -- stateless TTL ----------------------------------------------------------------------------

ACTIVITY = "Activity Log - Administrative"


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("mode", MODES)
def test_stateless_items_resolve_after_the_ttl_and_a_repeat_restarts_the_clock(
    tmp_path: Path, issuer: LocalIssuer, mode: str, store: str, request: pytest.FixtureRequest
) -> None:
    db = database(store, tmp_path, request)
    with receiver(tmp_path, issuer, mode, stateless_ttl="1.5", reopen_window="0", db=db) as rx:
        started = time.monotonic()
        send(rx, issuer, body(1, service=ACTIVITY))
        time.sleep(0.9)
        send(rx, issuer, body(2, service=ACTIVITY))  # a repeat
        rx.wait_until(lambda: all(i["state"] == "Resolved" for i in items(rx)), 10, "the TTL to resolve")
        elapsed = time.monotonic() - started
        resolved = items(rx)
    if mode == "rule-target":
        [item] = resolved
        assert item["occurrences"] == 2
        assert elapsed >= 0.9 + 1.5  # the repeat restarted the clock
    else:
        assert len(resolved) == 2  # one item per alert instance, each with its own clock
    for item in resolved:
        assert item["assignment_group"] == "Platform Team"
        assert any(
            "no repeat of this alert for 2s" in note and f"Azure never sends Resolved for {ACTIVITY}" in note
            for note in item["notes"]
        )


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_stateful_alerts_get_no_ttl(
    tmp_path: Path, issuer: LocalIssuer, store: str, request: pytest.FixtureRequest
) -> None:
    with receiver(tmp_path, issuer, stateless_ttl="0.3", db=database(store, tmp_path, request)) as rx:
        send(rx, issuer, body(1))
        time.sleep(1.0)
        assert items(rx)[0]["state"] == "New"


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("mode", MODES)
def test_a_restart_in_the_middle_of_a_ttl_keeps_the_clock(
    tmp_path: Path, issuer: LocalIssuer, mode: str, store: str, request: pytest.FixtureRequest
) -> None:
    db = database(store, tmp_path, request)
    with receiver(tmp_path, issuer, mode, stateless_ttl="2", db=db) as rx:
        send(rx, issuer, body(1, service=ACTIVITY))
        started = time.monotonic()
    assert [i["state"] for i in list_work_items(db)] == ["New"]
    with receiver(tmp_path, issuer, mode, stateless_ttl="2", db=db) as rx:
        rx.wait_until(lambda: items(rx)[0]["state"] == "Resolved", 15, "the TTL to resolve after a restart")
        assert time.monotonic() - started >= 1.9
        # The receiver's own Resolved is an ordinary, traceable delivery, applied once.
        assert rx.wait_dispatched() == {"pending": 0, "done": 2, "parked": 0}
        [item] = items(rx)
    assert sum("no repeat of this alert" in note for note in item["notes"]) == 1


def test_a_stored_resolution_cannot_be_forged_by_a_caller(tmp_path: Path, issuer: LocalIssuer) -> None:
    forged = body(1)
    forged["data"]["essentials"]["alertId"] = "secure-export-lifecycle/stateless-ttl/abc/1"
    forged["secureExportLifecycle"] = {"reason": "stateless-ttl", "key": "x"}
    with receiver(tmp_path, issuer) as rx:
        response = rx.post_alert(forged, issuer.mint())
    assert response.status_code == 422
    assert "secure-export-lifecycle/" in response.json()["detail"]


# -- resource health --------------------------------------------------------------------------

HEALTH = "Resource Health"


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("mode", MODES)
def test_resource_health_available_resolves_the_unavailable_item(
    tmp_path: Path, issuer: LocalIssuer, mode: str, store: str, request: pytest.FixtureRequest
) -> None:
    with receiver(tmp_path, issuer, mode, db=database(store, tmp_path, request)) as rx:
        send(rx, issuer, body(1, service=HEALTH, health="Unavailable"))
        assert items(rx)[0]["state"] == "New"
        send(rx, issuer, body(2, service=HEALTH, health="Available", fired="06:20"))
        [item] = items(rx)
        assert item["state"] == "Resolved"
        assert any("reports vm-app-01 Available again" in note for note in item["notes"])
        # An Available with nothing open opens nothing.
        send(rx, issuer, body(3, service=HEALTH, health="Available", fired="06:30"))
        assert len(items(rx)) == 1
        # Unavailable again within the window: the item Azure's recovery resolved is reopened.
        send(rx, issuer, body(4, service=HEALTH, health="Degraded", fired="06:40"))
        [item] = items(rx)
        assert (item["state"], item["reopened"]) == ("New", 1)


def test_work_items_filters_by_group_and_state(tmp_path: Path, issuer: LocalIssuer, capsys: Any) -> None:
    from receiver.cli.commands import main

    with receiver(tmp_path, issuer) as rx:
        send(rx, issuer, body(1, severity="Sev1"), body(2, severity="Sev3"), body(2, "Resolved"))
        db = rx.db_path
    assert main("work-items", ["--db", db, "--json", "--group", "app on-call"]) == 0
    assert [i["number"] for i in json.loads(capsys.readouterr().out)] == ["INC0000001"]
    assert main("work-items", ["--db", db, "--json", "--state", "resolved"]) == 0
    assert [i["number"] for i in json.loads(capsys.readouterr().out)] == ["INC0000002"]
    assert main("work-items", ["--db", db, "--json", "--group", "Azure Monitor Triage", "--state", "New"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main("work-items", ["--db", db]) == 0
    table = capsys.readouterr().out
    assert "GROUP" in table and "App On-Call" in table
    assert main("work-items", ["--db", db, "--state", "Open"]) == 2
    assert "unknown state 'Open'" in capsys.readouterr().err
