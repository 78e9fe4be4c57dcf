"""Incidents against the local BMC Helix: create, note, reopen, resolve, replay, concurrency, crashes."""

from __future__ import annotations

import asyncio

import pytest

from receiver.alerts.events import Condition
from receiver.itsm.base import PermanentBackendError, TransientBackendError
from receiver.itsm.markers import correlation_id, occurrence_marker
from tests.receiver.itsm.bmc_helix.helpers import VM_ID, alert_id, event, started_backend
from tests.support.itsm_fakes.bmc_helix import FakeBmc

pytestmark = pytest.mark.anyio

KEY = "rule:cpu-high|" + VM_ID.lower()


def _incident(fake: FakeBmc, n: int = 1, key: str | None = None) -> dict:
    [row] = fake.incident(**{"Vendor Ticket Number": correlation_id(key or alert_id(n))})
    return row


async def _apply(fake: FakeBmc, *events, **overrides) -> None:
    async with started_backend(fake, **overrides) as backend:
        for item in events:
            await backend.apply(item)


async def test_fired_creates_one_incident_bound_to_the_ci_with_levels_and_routing(fake: FakeBmc) -> None:
    await _apply(
        fake,
        event(1),
        assigned_support_company="Calbro Services",
        assigned_support_organization="IT Support",
        assigned_group="Cloud Operations",
        categorization_tier_1="Infrastructure",
    )
    incident = _incident(fake)
    ci = fake.cis[0]
    assert (incident["HPD_CI"], incident["HPD_CI_ReconID"]) == ("vm-web-01", ci["ReconciliationIdentity"])
    assert (incident["Impact"], incident["Urgency"]) == ("2-Significant/Large", "2-High")  # Sev1
    assert incident["Status"] == "Assigned"
    assert (
        incident["Assigned Support Company"],
        incident["Assigned Support Organization"],
        incident["Assigned Group"],
        incident["Categorization Tier 1"],
    ) == ("Calbro Services", "IT Support", "Cloud Operations", "Infrastructure")
    assert (incident["Reported Source"], incident["Service Type"]) == ("Systems Management", "Infrastructure Event")
    assert (incident["First Name"], incident["Last Name"]) == ("Azure", "Monitor")
    assert incident["Description"] == "[Sev1] cpu-high on vm-web-01"
    details = incident["Detailed Decription"]
    assert alert_id(1) in details and "Percentage CPU Average GreaterThan 90" in details
    assert details.endswith(occurrence_marker(alert_id(1), Condition.FIRED))
    assert incident["Vendor Ticket Number"].startswith("azmon:") and alert_id(1) not in incident["Vendor Ticket Number"]
    [create] = fake.form_requests("HPD:IncidentInterface_Create", "POST")
    assert create.body["values"]["z1D_Action"] == "CREATE"
    assert create.params["fields"] == "values(Incident Number)"


async def test_without_a_group_the_incident_is_new(fake: FakeBmc) -> None:
    await _apply(fake, event(1))
    assert _incident(fake)["Status"] == "New"


async def test_no_query_carries_alert_text_and_every_list_is_bounded(fake: FakeBmc) -> None:
    await _apply(fake, event(1), event(1, Condition.RESOLVED))
    lookups = [p for p in fake.qualifications if p.form == "HPD:IncidentInterface"]
    assert lookups and all(alert_id(1) not in p.text for p in lookups)
    for request in fake.requests:
        if request.method == "GET" and "/entry/" in request.path:
            assert request.params["fields"].startswith("values(") and int(request.params["limit"]) <= 200


async def test_repeated_fired_leaves_one_incident_and_no_extra_note(fake: FakeBmc) -> None:
    await _apply(fake, event(1), event(1), event(1))
    incident = _incident(fake)
    assert fake.work_log(incident["Incident Number"]) == []
    assert len(fake.incidents) == 1


async def test_concurrent_fired_for_one_key_create_one_incident(fake: FakeBmc) -> None:
    fake.slow_next(4, 0.05)  # widen the search-then-create window

    async with started_backend(fake) as backend:
        await asyncio.gather(*(backend.apply(event(1)) for _ in range(5)))
    assert len(fake.incidents) == 1


async def test_grouped_alerts_note_occurrences_and_resolve_when_the_last_one_resolves(fake: FakeBmc) -> None:
    await _apply(
        fake,
        event(1, correlation_key=KEY),
        event(2, correlation_key=KEY),
        event(2, correlation_key=KEY),
        event(1, Condition.RESOLVED, correlation_key=KEY),
    )
    incident = _incident(fake, key=KEY)
    assert incident["Status"] == "New"
    notes = fake.work_log(incident["Incident Number"])
    assert len(notes) == 2 and "1 grouped alert(s) still firing" in notes[1]
    await _apply(fake, event(2, Condition.RESOLVED, correlation_key=KEY))
    incident = _incident(fake, key=KEY)
    assert (incident["Status"], incident["Status_Reason"]) == ("Resolved", "Automated Resolution Reported")
    assert occurrence_marker(alert_id(2), Condition.RESOLVED) in incident["Resolution"]


async def test_resolved_resolves_with_status_reason_and_resolution_once(fake: FakeBmc) -> None:
    await _apply(
        fake,
        event(1),
        event(1, Condition.RESOLVED),
        event(1, Condition.RESOLVED),
        resolved_status_reason="No Further Action Required",
    )
    incident = _incident(fake)
    assert (incident["Status"], incident["Status_Reason"]) == ("Resolved", "No Further Action Required")
    assert "monitorCondition=Resolved" in incident["Resolution"]
    assert len(fake.work_log(incident["Incident Number"])) == 1
    assert len(fake.form_requests("HPD:IncidentInterface", "PUT")) == 1


async def test_resolved_before_fired_records_a_resolved_incident_that_the_late_fired_keeps_resolved(
    fake: FakeBmc,
) -> None:
    await _apply(fake, event(1, Condition.RESOLVED), event(1), event(1, Condition.RESOLVED))
    incident = _incident(fake)
    assert incident["Status"] == "Resolved" and "before Fired" in incident["Resolution"]
    assert len(fake.incidents) == 1
    assert not fake.form_requests("HPD:IncidentInterface", "PUT")


async def test_a_new_alert_after_resolve_reopens_the_incident(fake: FakeBmc) -> None:
    await _apply(
        fake,
        event(1, correlation_key=KEY),
        event(1, Condition.RESOLVED, correlation_key=KEY),
        event(2, correlation_key=KEY),
        assigned_group="Cloud Operations",
    )
    incident = _incident(fake, key=KEY)
    assert (incident["Status"], incident.get("Status_Reason")) == ("Assigned", None)
    await _apply(fake, event(3, correlation_key=KEY))
    assert _incident(fake, key=KEY)["Status"] == "Assigned"
    assert len(fake.incidents) == 1


async def test_a_closed_incident_is_left_alone_and_a_new_fired_opens_another(fake: FakeBmc) -> None:
    await _apply(fake, event(1))
    fake.incidents[0]["Status"] = "Closed"
    await _apply(fake, event(1, Condition.RESOLVED))
    assert not fake.form_requests("HPD:IncidentInterface", "PUT") and len(fake.incidents) == 1
    await _apply(fake, event(1))
    assert [i["Status"] for i in fake.incidents] == ["Closed", "New"]


async def test_two_open_incidents_for_one_key_are_a_permanent_error_naming_both(fake: FakeBmc) -> None:
    await _apply(fake, event(1))
    fake.incidents.append(
        dict(
            fake.incidents[0], **{"Incident Number": "INC000000009999", "Request ID": "INC000000009999|INC000000009999"}
        )
    )
    with pytest.raises(PermanentBackendError, match="INC000000000101, INC000000009999"):
        await _apply(fake, event(1, Condition.RESOLVED))


@pytest.mark.parametrize("form", ["HPD:IncidentInterface_Create", "HPD:IncidentInterface", "HPD:WorkLog"])
async def test_an_answer_lost_after_bmc_applied_the_change_is_replayed_without_duplicates(
    fake: FakeBmc, form: str
) -> None:
    """The connection drops after BMC committed; the dispatcher's retry must change nothing twice."""
    steps = [
        event(1, correlation_key=KEY),
        event(2, correlation_key=KEY),
        event(1, Condition.RESOLVED, correlation_key=KEY),
        event(2, Condition.RESOLVED, correlation_key=KEY),
    ]
    drop = fake.drop_next(
        1,
        after_processing=True,
        method="POST" if form != "HPD:IncidentInterface" else "PUT",
        path_prefix=f"/api/arsys/v1/entry/{form}",
    )

    async with started_backend(fake) as backend:
        for step in steps:
            try:
                await backend.apply(step)
            except TransientBackendError:
                await backend.apply(step)  # the dispatcher's retry
    assert drop.hits == 1
    incident = _incident(fake, key=KEY)
    assert len(fake.incidents) == 1 and incident["Status"] == "Resolved"
    notes = fake.work_log(incident["Incident Number"])
    markers = [n.rsplit("\n", 1)[-1] for n in notes]
    assert len(markers) == len(set(markers)) == 3  # alert 2 fired, alert 1 resolved, alert 2 resolved


async def test_apply_returns_the_incident_number_for_trace(fake: FakeBmc) -> None:
    async with started_backend(fake) as backend:
        refs = [await backend.apply(e) for e in (event(1), event(1), event(1, Condition.RESOLVED))]
    assert {ref.number for ref in refs} == {"INC000000000101"}


async def test_the_alerts_route_is_laid_over_the_static_one(fake: FakeBmc) -> None:
    import dataclasses

    from secure_export.routing import RoutingSubject, parse_routing

    routing = parse_routing(
        {
            "routes": [{"match": {"severity": "Sev1"}, "set": {"assignmentGroup": "Shop On-Call", "impact": 1}}],
            "default": {"assignmentGroup": "Azure Monitor Triage", "category": "Monitoring"},
        }
    )
    routed = dataclasses.replace(event(1), route=routing.decide(RoutingSubject(severity="Sev1")))
    await _apply(fake, routed, assigned_support_company="Calbro Services", assigned_group="Cloud Operations")
    incident = _incident(fake)
    assert (incident["Assigned Group"], incident["Categorization Tier 1"]) == ("Shop On-Call", "Monitoring")
    assert incident["Assigned Support Company"] == "Calbro Services"  # the static part the route leaves alone
    assert incident["Impact"] == "1-Extensive/Widespread"  # the route's impact beats the severity's
