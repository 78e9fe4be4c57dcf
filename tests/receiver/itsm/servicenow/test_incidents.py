"""Incident mode against the local ServiceNow: create, note, resolve, replay, concurrency."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from receiver.alerts.events import Condition
from receiver.itsm.base import PermanentBackendError, TransientBackendError
from receiver.itsm.markers import correlation_id, lifecycle_id, occurrence_marker
from tests.receiver.itsm.servicenow.helpers import VM_ID, alert_id, event, started_backend
from tests.support.itsm_fakes.loopback import Fault
from tests.support.itsm_fakes.servicenow import FakeServiceNow

pytestmark = pytest.mark.anyio


def _incidents(fake: FakeServiceNow, n: int = 1) -> list[dict[str, str]]:
    return fake.rows("incident", correlation_id=correlation_id(alert_id(n)))


async def test_fired_creates_one_incident_with_hashed_correlation_id_ci_and_levels(fake: FakeServiceNow) -> None:
    group = "0123456789abcdef0123456789abcdef"
    async with started_backend(fake, assignment_group=group, category="software", contact_type="monitoring") as backend:
        await backend.apply(event(1))
    [incident] = fake.rows("incident")
    assert incident["correlation_id"] == correlation_id(alert_id(1))
    assert incident["correlation_id"].startswith("azmon:") and alert_id(1) not in incident["correlation_id"]
    assert incident["cmdb_ci"] == fake.rows("cmdb_ci", object_id=VM_ID)[0]["sys_id"]
    assert (incident["impact"], incident["urgency"], incident["priority"]) == ("1", "2", "2")  # Sev1
    assert incident["state"] == "1" and incident["active"] == "true"
    assert (incident["assignment_group"], incident["category"], incident["contact_type"]) == (
        group,
        "software",
        "monitoring",
    )
    assert alert_id(1) in incident["description"]
    assert "Percentage CPU Average GreaterThan 90" in incident["description"]
    assert "https://portal.azure.com/" in incident["description"]
    assert "vm-web-01" in incident["short_description"] and "cpu-high" in incident["short_description"]
    # The rule and targets, hashed: how the reopen window finds the latest incident of the same rule.
    assert incident["correlation_display"] == lifecycle_id(alert_id(1))
    assert fake.journal(incident["sys_id"])[0].endswith(occurrence_marker(alert_id(1), Condition.FIRED))


async def test_every_query_is_bounded_named_and_hashed(fake: FakeServiceNow) -> None:
    async with started_backend(fake) as backend:
        await backend.apply(event(1))
    queries = [r for r in fake.requests if r.method == "GET" and "sysparm_query" in r.params]
    assert queries
    for request in queries:
        assert request.params["sysparm_fields"]
        assert int(request.params["sysparm_limit"]) <= 200
        assert alert_id(1) not in request.params["sysparm_query"]
    incident_queries = fake.table_requests("incident", "GET")
    assert all(int(r.params["sysparm_limit"]) <= 10 for r in incident_queries)


async def test_three_deliveries_of_one_fired_leave_one_incident_and_one_note(fake: FakeServiceNow) -> None:
    async with started_backend(fake) as backend:
        for _ in range(3):
            await backend.apply(event(1))
    [incident] = _incidents(fake)
    assert len(fake.journal(incident["sys_id"])) == 1


async def test_concurrent_fired_deliveries_for_one_key_create_one_incident(fake: FakeServiceNow) -> None:
    fake.slow_next(4, 0.05)  # widen the search-then-create window

    async with started_backend(fake) as backend:
        await asyncio.gather(*(backend.apply(event(1)) for _ in range(5)))
    assert len(_incidents(fake)) == 1


async def test_another_alert_on_the_same_key_adds_an_occurrence_note(fake: FakeServiceNow) -> None:
    key = "rule:cpu-high|" + VM_ID.lower()

    async with started_backend(fake) as backend:
        await backend.apply(event(1, correlation_key=key))
        await backend.apply(event(2, correlation_key=key))
        await backend.apply(event(2, correlation_key=key))
    [incident] = fake.rows("incident")
    notes = fake.journal(incident["sys_id"])
    assert len(notes) == 2 and alert_id(2) in notes[1]


async def test_resolved_sets_state_6_with_a_valid_close_code_and_notes(fake: FakeServiceNow) -> None:
    async with started_backend(fake) as backend:
        await backend.apply(event(1))
        await backend.apply(event(1, Condition.RESOLVED))
        await backend.apply(event(1, Condition.RESOLVED))
    [incident] = _incidents(fake)
    valid = {c["value"] for c in fake.rows("sys_choice", element="close_code", inactive="false")}
    assert incident["state"] == "6" and incident["close_code"] in valid
    assert "monitorCondition=Resolved" in incident["close_notes"]
    assert len(fake.journal(incident["sys_id"])) == 2
    assert not any(r.body.get("state") == "7" for r in fake.table_requests("incident", "PATCH"))


async def test_resolved_before_fired_leaves_no_open_incident(fake: FakeServiceNow) -> None:
    async with started_backend(fake) as backend:
        await backend.apply(event(1, Condition.RESOLVED))
        await backend.apply(event(1))
        await backend.apply(event(1))
    [incident] = _incidents(fake)
    assert incident["state"] == "6" and incident["close_code"] and incident["close_notes"]
    assert not fake.rows("incident", state="1") and not fake.rows("incident", state="2")
    assert len(fake.journal(incident["sys_id"])) == 2


async def test_resolved_for_an_incident_already_closed_by_people_changes_nothing(fake: FakeServiceNow) -> None:
    fake.insert("incident", {"correlation_id": correlation_id(alert_id(1)), "state": "7", "active": "false"})
    async with started_backend(fake) as backend:
        await backend.apply(event(1, Condition.RESOLVED))
    assert len(_incidents(fake)) == 1
    assert not fake.table_requests("incident", "POST") and not fake.table_requests("incident", "PATCH")


async def test_a_new_alert_reopens_a_resolved_incident_on_the_same_key(fake: FakeServiceNow) -> None:
    key = "rule:cpu-high|" + VM_ID.lower()

    async with started_backend(fake) as backend:
        await backend.apply(event(1, correlation_key=key))
        await backend.apply(event(1, Condition.RESOLVED, correlation_key=key))
        await backend.apply(event(2, correlation_key=key))
    [incident] = fake.rows("incident")
    assert incident["state"] == "2"


async def test_replay_after_the_answer_was_lost_changes_nothing(fake: FakeServiceNow) -> None:
    """ServiceNow applied the POST/PATCH but the connection dropped: the retry must not duplicate."""

    async with started_backend(fake) as backend:
        fake.drop_next(1, after_processing=True, method="POST", path_prefix="/api/now/table/incident")
        with pytest.raises(TransientBackendError, match="cannot reach ServiceNow"):
            await backend.apply(event(1))
        await backend.apply(event(1))
        fake.drop_next(1, after_processing=True, method="PATCH")
        with pytest.raises(TransientBackendError, match="cannot reach ServiceNow"):
            await backend.apply(event(1, Condition.RESOLVED))
        await backend.apply(event(1, Condition.RESOLVED))
    [incident] = _incidents(fake)
    assert incident["state"] == "6"
    assert len(fake.journal(incident["sys_id"])) == 2
    assert len(fake.table_requests("incident", "POST")) == 1


async def test_two_open_incidents_for_one_key_park_with_a_clear_reason(fake: FakeServiceNow) -> None:
    for _ in range(2):
        fake.insert(
            "incident",
            {"correlation_id": correlation_id(alert_id(1)), "state": "1", "active": "true", "number": "INC0000099"},
        )
    with pytest.raises(PermanentBackendError, match="more than one open incident"):
        async with started_backend(fake) as backend:
            await backend.apply(event(1))


async def test_rows_that_do_not_match_are_never_taken_for_the_incident(fake: FakeServiceNow) -> None:
    """If the instance dropped the correlation_id condition, the row check still refuses strangers."""
    fake.insert("incident", {"correlation_id": "azmon:someone-else", "state": "1", "active": "true"})
    original = fake._parse_condition

    def drop_correlation(schema, part):
        return None if part.startswith("correlation_id") else original(schema, part)

    fake._parse_condition = drop_correlation
    async with started_backend(fake) as backend:
        await backend.apply(event(1))
    assert len(_incidents(fake)) == 1
    assert fake.rows("incident", correlation_id="azmon:someone-else")[0]["state"] == "1"


async def test_severity_map_is_configurable_and_missing_severity_uses_the_fallback(fake: FakeServiceNow) -> None:
    async with started_backend(
        fake, severity_map={"Sev1": {"impact": 3, "urgency": 1}}, unknown_severity="Sev4"
    ) as backend:
        await backend.apply(event(1, severity="Sev1"))
        await backend.apply(dataclasses.replace(event(2), severity=None))
    [first] = _incidents(fake, 1)
    [second] = _incidents(fake, 2)
    assert (first["impact"], first["urgency"]) == ("3", "1")
    assert (second["impact"], second["urgency"]) == ("3", "3")


async def test_a_grouped_incident_resolves_only_when_every_alert_on_it_resolved(fake: FakeServiceNow) -> None:
    key = "rule:cpu-high|" + VM_ID.lower()

    async with started_backend(fake) as backend:
        await backend.apply(event(1, correlation_key=key))
        await backend.apply(event(2, correlation_key=key))
        await backend.apply(event(1, Condition.RESOLVED, correlation_key=key))
        await backend.apply(event(1, Condition.RESOLVED, correlation_key=key))
        [open_incident] = fake.rows("incident")
        assert open_incident["state"] == "1"
        assert "1 grouped alert(s) still firing" in fake.journal(open_incident["sys_id"])[-1]
        await backend.apply(event(2, Condition.RESOLVED, correlation_key=key))
    [incident] = fake.rows("incident")
    assert incident["state"] == "6" and incident["close_code"]
    assert len(fake.journal(incident["sys_id"])) == 4


async def test_resolved_on_an_incident_people_already_resolved_keeps_the_group_right(fake: FakeServiceNow) -> None:
    key = "rule:cpu-high|" + VM_ID.lower()

    async with started_backend(fake) as backend:
        await backend.apply(event(1, correlation_key=key))
        fake.tables["incident"][0].update(
            state="6", close_code="Solution provided", close_notes="by hand", resolved_at="2026-11-26 06:20:00"
        )
        await backend.apply(event(1, Condition.RESOLVED, correlation_key=key))
        await backend.apply(event(2, correlation_key=key))  # a new instance reopens
        assert fake.rows("incident")[0]["state"] == "2"
        await backend.apply(event(2, Condition.RESOLVED, correlation_key=key))
    [incident] = fake.rows("incident")
    assert incident["state"] == "6"
    assert len(fake.journal(incident["sys_id"])) == 4


@pytest.mark.parametrize("refusal", ["read-acl", "403"])
async def test_without_read_access_to_sys_journal_field_nothing_is_left_open(
    fake: FakeServiceNow, refusal: str
) -> None:
    """Some instances hide sys_journal_field; the marker in close_notes still protects Resolved-before-Fired.

    A read ACL answers 200 with no rows (the usual case); a query on a field the user may not read
    answers 403.
    """
    if refusal == "read-acl":
        fake.hide("sys_journal_field")
    else:
        fake.inject(Fault("status", 403, remaining=None, path_prefix="/api/now/table/sys_journal_field"))

    async with started_backend(fake) as backend:
        await backend.apply(event(1, Condition.RESOLVED))
        await backend.apply(event(1))
        await backend.apply(event(2))
        await backend.apply(event(2, Condition.RESOLVED))
        await backend.apply(event(2, Condition.RESOLVED))
    assert [r["state"] for r in fake.rows("incident")] == ["6", "6"]
    assert len(fake.journal(_incidents(fake, 2)[0]["sys_id"])) == 2


async def test_markers_past_the_first_page_of_the_journal_are_read(fake: FakeServiceNow) -> None:
    """A busy grouped incident has more than one page (500) of notes; a replay is still recognised.

    Guards: reading only the first page of ``sys_journal_field`` (no offset, or one page): the replayed
    Fired would add a second note and the Resolved would resolve the incident while another alert of
    the group still fires (docs/testing.md, "Mutations").
    """
    key = "rule:cpu-high|" + VM_ID.lower()

    async with started_backend(fake) as backend:
        await backend.apply(event(1, correlation_key=key))
        [incident] = fake.rows("incident")
        # 600 older occurrences of other alerts, then alert 2 fires: its marker is on the second page.
        for n in range(600):
            fake.insert(
                "sys_journal_field",
                {
                    "element_id": incident["sys_id"],
                    "element": "work_notes",
                    "name": "incident",
                    "value": f"Occurrence {n}\n{occurrence_marker(alert_id(1000 + n), Condition.RESOLVED)}",
                },
            )
        await backend.apply(event(2, correlation_key=key))
        notes = len(fake.journal(incident["sys_id"]))
        await backend.apply(event(2, correlation_key=key))  # replay: already noted on page 2
        assert len(fake.journal(incident["sys_id"])) == notes
        await backend.apply(event(1, Condition.RESOLVED, correlation_key=key))
        assert fake.rows("incident")[0]["state"] != "6"  # alert 2 (page 2) still fires
    offsets = [r.params.get("sysparm_offset", "0") for r in fake.table_requests("sys_journal_field")]
    assert "500" in offsets
