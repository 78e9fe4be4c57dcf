"""ServiceNow: routed fields resolved by name, and the lifecycle rules (reopen, closed, flapping, TTL, recovery)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.alerts.events import AlertEvent, Condition
from receiver.demo.local_issuer import LocalIssuer
from receiver.itsm.counters import register_counters
from receiver.itsm.markers import correlation_id, occurrence_marker
from receiver.itsm.servicenow.backend import ServiceNowBackend
from secure_export.routing import RoutingSubject, parse_routing
from tests.receiver.itsm.servicenow.helpers import VM_ID, alert_id, event, settings
from tests.support.alerts import alert_body
from tests.support.itsm_fakes.backends import started
from tests.support.itsm_fakes.servicenow import FakeServiceNow
from tests.support.receivers import start_receiver

pytestmark = pytest.mark.anyio

RULE_TARGET = "cpu-high|" + VM_ID.lower()
ROUTING = parse_routing(
    {
        "routes": [
            {
                "match": {"severity": "Sev1"},
                "set": {
                    "assignmentGroup": "Shop On-Call",
                    "businessService": "Web Shop",
                    "caller": "azure.monitor",
                    "category": "Hardware",
                    "subcategory": "CPU",
                    "impact": 3,
                    "urgency": 1,
                    "fields": {"u_team": "shop", "contact_type": "monitoring"},
                },
            },
            {"match": {"severity": "Sev2"}, "set": {"assignmentGroup": "Nobody By This Name"}},
        ],
        "default": {"assignmentGroup": "Azure Monitor Triage"},
    }
)


def routed(ev: AlertEvent) -> AlertEvent:
    subject = RoutingSubject(severity=ev.severity, target_ids=ev.target_ids, alert_rule=ev.rule)
    return dataclasses.replace(ev, route=ROUTING.decide(subject), lifecycle_key=RULE_TARGET)


def seed(fake: FakeServiceNow) -> dict[str, str]:
    return {
        "shop": fake.insert("sys_user_group", {"name": "Shop On-Call", "active": "true"})["sys_id"],
        "triage": fake.insert("sys_user_group", {"name": "Azure Monitor Triage", "active": "true"})["sys_id"],
        "service": fake.insert("cmdb_ci_service", {"name": "Web Shop"})["sys_id"],
        "caller": fake.insert("sys_user", {"user_name": "azure.monitor", "name": "Azure Monitor", "active": "true"})[
            "sys_id"
        ],
    }


def backend_for(fake: FakeServiceNow, **kwargs: Any) -> ServiceNowBackend:
    return ServiceNowBackend(settings(fake), **kwargs)


async def applied(backend: ServiceNowBackend, *events: AlertEvent) -> None:
    for ev in events:
        await backend.apply(ev)


async def drive(fake: FakeServiceNow, *events: AlertEvent, **kwargs: Any) -> ServiceNowBackend:
    """Start a backend against ``fake``, apply ``events`` in order, close it; the closed backend keeps its counters."""
    async with started(backend_for(fake, **kwargs)) as backend:
        await applied(backend, *events)
    return backend


# -- routing ----------------------------------------------------------------------------------


async def test_names_resolve_to_sys_ids_and_the_route_sets_every_field(fake: FakeServiceNow) -> None:
    ids = seed(fake)
    await drive(fake, routed(event(1)), routed(event(2, correlation_key="other")))
    first, second = fake.rows("incident")
    assert (first["assignment_group"], first["business_service"], first["caller_id"]) == (
        ids["shop"],
        ids["service"],
        ids["caller"],
    )
    assert (first["category"], first["subcategory"], first["u_team"], first["contact_type"]) == (
        "Hardware",
        "CPU",
        "shop",
        "monitoring",
    )
    # The route's impact/urgency beat the severity map (Sev1 → 1/2): priority from ServiceNow's matrix.
    assert (first["impact"], first["urgency"], first["priority"]) == ("3", "1", "3")
    assert second["assignment_group"] == ids["shop"]
    # Cached: each name was looked up once for both incidents.
    assert len(fake.table_requests("sys_user_group", "GET")) == 1
    assert len(fake.table_requests("cmdb_ci_service", "GET")) == 1
    assert len(fake.table_requests("sys_user", "GET")) == 1


async def test_an_unknown_group_goes_to_the_default_with_a_note_readyz_detail_and_a_metric(
    fake: FakeServiceNow,
) -> None:
    ids = seed(fake)
    async with started(backend_for(fake)) as backend:
        await backend.apply(routed(event(1, severity="Sev2")))
        readiness = await backend.readiness()
    [incident] = fake.rows("incident")
    assert incident["assignment_group"] == ids["triage"]
    [note] = fake.journal(incident["sys_id"])
    assert "Assignment group 'Nobody By This Name' (routes[1]) does not exist in ServiceNow" in note
    assert "assigned to Azure Monitor Triage instead" in note
    assert readiness.ready and "Nobody By This Name" in readiness.reason
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    register_counters(registry, backend)
    text = generate_latest(registry).decode()
    assert 'secure_export_routing_unresolved_names{kind="assignment_group",name="Nobody By This Name"} 1.0' in text


async def test_when_no_group_resolves_the_item_is_still_created_unassigned(fake: FakeServiceNow) -> None:
    await drive(fake, routed(event(1, severity="Sev2")))  # neither group exists on this instance
    [incident] = fake.rows("incident")
    assert incident.get("assignment_group", "") == ""
    assert "no default group resolves; left unassigned" in fake.journal(incident["sys_id"])[0]


async def test_names_and_field_values_never_reach_a_query_unchecked(fake: FakeServiceNow) -> None:
    seed(fake)
    hostile = parse_routing({"default": {"assignmentGroup": "Shop On-Call", "fields": {"u_team": "x^ORactive=false"}}})
    ev = dataclasses.replace(event(1), route=hostile.decide(RoutingSubject()))
    await drive(fake, ev)
    queries = [r.params.get("sysparm_query", "") for r in fake.requests if r.method == "GET"]
    assert "name=Shop On-Call^active=true" in queries
    assert not any("x^ORactive" in q for q in queries)
    assert fake.rows("incident")[0]["u_team"] == "x^ORactive=false"  # only ever in the JSON body


# -- lifecycle --------------------------------------------------------------------------------


def lifecycle_event(n: int, condition: Condition = Condition.FIRED, **changes: Any) -> AlertEvent:
    """Alert mode: each instance its own key, the same rule and VM."""
    return dataclasses.replace(event(n, condition), lifecycle_key=RULE_TARGET, **changes)


async def test_a_re_fire_within_the_window_reopens_the_incident_in_alert_mode(fake: FakeServiceNow) -> None:
    await drive(fake, lifecycle_event(1), lifecycle_event(1, Condition.RESOLVED), lifecycle_event(2))
    [incident] = fake.rows("incident")
    assert incident["state"] == "2"
    assert incident["correlation_id"] == correlation_id(alert_id(2))  # it answers to the new instance now
    assert any(note.startswith("Reopened: Azure Monitor fired alert") for note in fake.journal(incident["sys_id"]))
    await drive(fake, lifecycle_event(2, Condition.RESOLVED))
    assert fake.rows("incident")[0]["state"] == "6"


async def test_a_re_fire_after_the_window_opens_a_new_incident(fake: FakeServiceNow) -> None:
    later = dataclasses.replace(lifecycle_event(2), fired_at=lifecycle_event(2).fired_at.replace(year=2027))
    await drive(fake, lifecycle_event(1), lifecycle_event(1, Condition.RESOLVED), later)
    old, new = fake.rows("incident")
    assert (old["state"], new["state"]) == ("6", "1")


async def test_a_closed_incident_is_never_reopened_and_the_new_one_names_it(fake: FakeServiceNow) -> None:
    fake.closing_allowed = True
    await drive(fake, lifecycle_event(1), lifecycle_event(1, Condition.RESOLVED))
    [old] = fake.rows("incident")
    fake.tables["incident"][0].update(state="7", active="false")  # a person closed it
    await drive(fake, lifecycle_event(2))
    old, new = fake.rows("incident")
    assert (old["state"], new["state"]) == ("7", "1")
    assert f"Follows {old['number']}, which a person closed" in fake.journal(new["sys_id"])[0]


@pytest.mark.parametrize("mode", ["alert", "rule-target"])
async def test_a_held_resolved_keeps_the_incident_open_until_the_receiver_resolves_it(
    fake: FakeServiceNow, mode: str
) -> None:
    key = RULE_TARGET if mode == "rule-target" else alert_id(1)
    fired = lifecycle_event(1, correlation_key=key)
    held = lifecycle_event(1, Condition.RESOLVED, correlation_key=key, hold="Flapping: 4 fire/resolve cycles")
    await drive(fake, fired, held)
    [incident] = fake.rows("incident")
    assert incident["state"] == "1"
    assert fake.journal(incident["sys_id"])[-1].startswith("Flapping: 4 fire/resolve cycles")
    quiet = dataclasses.replace(
        lifecycle_event(1, Condition.RESOLVED, correlation_key=key),
        alert_id="secure-export-lifecycle/flap-quiet/x/1",
        lifecycle_reason="flap-quiet",
        lifecycle_note="Resolved by secure-export: no Fired for 15min after flapping",
    )
    await drive(fake, quiet, quiet)  # the second is a replay: nothing more happens
    [incident] = fake.rows("incident")
    assert incident["state"] == "6" and incident["close_notes"].startswith("Resolved by secure-export: no Fired")
    assert sum("no Fired for 15min" in note for note in fake.journal(incident["sys_id"])) == 1


async def test_another_instance_joins_an_incident_only_when_flap_damping_held_it(fake: FakeServiceNow) -> None:
    """Guards the join of a Fired into an open incident of its rule: dropping the held-marker check makes
    the second half open no incident for alert 4 (its Fired lands on alert 3's incident)."""
    await drive(
        fake, lifecycle_event(1), lifecycle_event(1, Condition.RESOLVED, hold="Flapping: 4 fire/resolve cycles")
    )
    await drive(fake, lifecycle_event(2))
    [held] = fake.rows("incident")
    assert (held["state"], held["correlation_id"]) == ("1", correlation_id(alert_id(2)))
    assert any(note.startswith("Fired again while flapping.") for note in fake.journal(held["sys_id"]))
    fake.tables["incident"].clear()
    # Open with nothing firing but no held Resolved: another replica is half-way through resolving it.
    await drive(fake, lifecycle_event(3))
    [mid] = fake.rows("incident")
    fake.insert(
        "sys_journal_field",
        {
            "element_id": mid["sys_id"],
            "element": "work_notes",
            "name": "incident",
            "value": occurrence_marker(alert_id(3), Condition.RESOLVED),
        },
    )
    await drive(fake, lifecycle_event(4))
    assert sorted(row["correlation_id"] for row in fake.rows("incident")) == sorted(
        [correlation_id(alert_id(3)), correlation_id(alert_id(4))]
    )


async def test_a_receiver_resolution_with_nothing_open_creates_nothing(fake: FakeServiceNow) -> None:
    ttl = dataclasses.replace(
        lifecycle_event(9, Condition.RESOLVED),
        alert_id="secure-export-lifecycle/stateless-ttl/x/1",
        lifecycle_reason="stateless-ttl",
        lifecycle_note="Resolved by secure-export",
    )
    await drive(fake, ttl)
    assert fake.rows("incident") == []


async def test_resource_health_available_resolves_the_unavailable_incident(fake: FakeServiceNow) -> None:
    unavailable = lifecycle_event(1, monitoring_service="Resource Health")
    available = lifecycle_event(2, monitoring_service="Resource Health", recovery=True)
    await drive(fake, available)  # nothing open: nothing created
    assert fake.rows("incident") == []
    await drive(fake, unavailable, available)
    [incident] = fake.rows("incident")
    assert incident["state"] == "6"
    assert "resource health reports vm-web-01 Available again" in incident["close_notes"]


# -- through a receiver: stateless TTL across a restart --------------------------------------


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as local:
        yield local


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
@pytest.mark.parametrize("mode", ["alert", "rule-target"])
def test_stateless_ttl_resolves_the_incident_after_a_restart(
    tmp_path: Path, issuer: LocalIssuer, fake: FakeServiceNow, mode: str, store: str, request: pytest.FixtureRequest
) -> None:
    document = alert_body(1)
    document["data"]["essentials"]["monitoringService"] = "Activity Log - Administrative"
    db = str(tmp_path / "ttl.db") if store == "sqlite" else str(request.getfixturevalue("postgres_url"))
    env = {"correlation": mode, "stateless_ttl": "2", "lifecycle_sweep_seconds": "0.05", "db": db}
    with start_receiver(tmp_path, issuer, backend=backend_for(fake), **env) as rx:
        assert rx.post_alert(document, issuer.mint()).status_code == 202
        rx.wait_dispatched()
        started = time.monotonic()
    [incident] = fake.rows("incident")
    assert incident["state"] == "1"
    with start_receiver(tmp_path, issuer, backend=backend_for(fake), **env) as rx:
        rx.wait_until(lambda: fake.rows("incident")[0]["state"] == "6", 15, "the TTL to resolve the incident")
        assert time.monotonic() - started >= 1.9
    [incident] = fake.rows("incident")
    assert "no repeat of this alert for 2s" in incident["close_notes"]
    assert "Azure never sends Resolved for Activity Log - Administrative alerts" in incident["close_notes"]


def test_readyz_detail_names_a_routing_group_servicenow_does_not_know(
    tmp_path: Path, issuer: LocalIssuer, fake: FakeServiceNow
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text("default: {assignmentGroup: Ghost Team}\n")
    with start_receiver(tmp_path, issuer, backend=backend_for(fake), routing=str(routing)) as rx:
        assert rx.post_alert(alert_body(1), issuer.mint()).status_code == 202
        rx.wait_dispatched()
        answer = rx.get("/readyz")
        assert 'secure_export_routing_unresolved_names{kind="assignment_group",name="Ghost Team"} 1.0' in rx.metrics()
    assert answer.status_code == 200
    [warning] = answer.json()["warnings"]
    assert "routing assignment_group no active sys_user_group record is named 'Ghost Team'" in warning
    [incident] = fake.rows("incident")  # created all the same, unassigned, with the reason in a work note
    assert "'Ghost Team' (default) does not exist in ServiceNow" in fake.journal(incident["sys_id"])[0]
