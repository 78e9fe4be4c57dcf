"""Read ACLs, as ServiceNow applies them: rows the integration user may not read are left out of a
200 answer (empty or partial), never refused with 403. What the backend does on such an instance.

Breaking changes these tests catch (docs/testing.md, "Mutations"):

* the close-code check refusing a ``close_code`` that it could not check (``if choices and code not
  in choices`` weakened to ``if code not in choices``): the receiver would not start on an instance
  that hides ``sys_choice``;
* the check forgetting that it ran when ``sys_choice`` showed nothing (``_close_code_checked`` not
  set): ``sys_choice`` would be queried again before every resolution;
* the incident read-back check dropped: a hidden ``incident`` table turns every delivery into a new
  incident.
"""

from __future__ import annotations

import logging

import pytest

from receiver.alerts.events import Condition
from receiver.itsm.base import PermanentBackendError, TransientBackendError
from receiver.itsm.servicenow.backend import ServiceNowBackend
from tests.receiver.itsm.servicenow.helpers import event, settings, started_backend
from tests.support.itsm_fakes.servicenow import FakeServiceNow

pytestmark = pytest.mark.anyio


def _unchecked_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum(getattr(r, "event", None) == "servicenow_close_code_unchecked" for r in caplog.records)


async def test_a_hidden_sys_choice_neither_stops_start_nor_is_asked_again(
    fake: FakeServiceNow, caplog: pytest.LogCaptureFixture
) -> None:
    fake.hide("sys_choice")

    async with started_backend(fake, close_code="Workaround provided") as backend:  # start() runs the check
        for n in (1, 2):
            await backend.apply(event(n))
            await backend.apply(event(n, Condition.RESOLVED))
        assert (await backend.readiness()).ready
    incidents = fake.rows("incident")
    assert [(i["state"], i["close_code"]) for i in incidents] == [("6", "Workaround provided")] * 2
    assert [r.status for r in fake.table_requests("sys_choice")] == [200]  # checked once, at start
    assert _unchecked_warnings(caplog) == 1


async def test_a_hidden_sys_choice_is_checked_once_even_when_start_could_not_reach_the_instance(
    fake: FakeServiceNow, caplog: pytest.LogCaptureFixture
) -> None:
    fake.hide("sys_choice")

    backend = ServiceNowBackend(settings(fake))
    fake.start_outage()
    await backend.start()
    fake.end_outage()
    try:
        for n in (1, 2):
            await backend.apply(event(n, Condition.RESOLVED))
    finally:
        await backend.close()
    assert [r.status for r in fake.table_requests("sys_choice")] == [503, 200]
    assert [i["state"] for i in fake.rows("incident")] == ["6", "6"]
    assert _unchecked_warnings(caplog) == 1


async def test_a_wrong_close_code_unchecked_behind_a_hidden_sys_choice_parks_resolutions_with_the_policy_named(
    fake: FakeServiceNow,
) -> None:
    """What an operator sees when the check could not run: ServiceNow drops the unknown choice, and its
    data policy then refuses the resolution as if the code were missing (permanent: parked)."""
    fake.hide("sys_choice")

    async with started_backend(fake, close_code="Fixed it") as backend:
        await backend.apply(event(1))
        with pytest.raises(PermanentBackendError, match=r"(?s)Data Policy Exception.*mandatory: Resolution code$"):
            await backend.apply(event(1, Condition.RESOLVED))
    assert fake.rows("incident")[0]["state"] == "1"


async def test_partly_hidden_choices_still_let_a_visible_close_code_through(fake: FakeServiceNow) -> None:
    fake.hide("sys_choice", rows=lambda row: row.get("value") in ("Duplicate", "Known error"))
    async with started_backend(fake, close_code="Solution provided") as backend:
        await backend.apply(event(1, Condition.RESOLVED))
    assert fake.rows("incident")[0]["close_code"] == "Solution provided"


async def test_a_close_code_hidden_among_visible_choices_is_refused_with_the_acl_named(fake: FakeServiceNow) -> None:
    # Indistinguishable from a wrong code, which the instance would drop silently before its data
    # policy refuses every resolution: refusing to start, naming the ACL as a possible cause, is safer.
    fake.hide("sys_choice", rows=lambda row: row.get("value") == "Solution provided")
    with pytest.raises(PermanentBackendError, match="not an active close_code.*read ACL hides some sys_choice"):
        async with started_backend(fake, close_code="Solution provided") as backend:
            await backend.apply(event(1))


async def test_a_hidden_cmdb_leaves_the_incident_unbound_and_says_so(fake: FakeServiceNow) -> None:
    fake.hide("cmdb_ci")
    async with started_backend(fake) as backend:
        await backend.apply(event(1))
    [incident] = fake.rows("incident")
    assert not incident.get("cmdb_ci")
    assert "not found in the CMDB" in incident["description"]
    assert fake.table_requests("cmdb_ci", "GET") and not fake.table_requests("cmdb_ci", "POST")


async def test_a_hidden_incident_table_pauses_instead_of_opening_an_incident_per_delivery(
    fake: FakeServiceNow, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="secure_export.servicenow")
    fake.hide("incident")

    async with started_backend(fake) as backend:
        await backend.apply(event(1))  # created: ServiceNow took it, the user just cannot see it
        readiness = await backend.readiness()
        assert not readiness.ready and "read ACL on incident" in readiness.reason
        for delivery in (event(1), event(2), event(1, Condition.RESOLVED)):
            with pytest.raises(TransientBackendError, match="does not show it to this user"):
                await backend.apply(delivery)
        assert len(fake.rows("incident")) == 1
        fake.unhide("incident")  # the operator grants read access
        assert (await backend.readiness()).ready
        await backend.apply(event(1))
        await backend.apply(event(2))
    assert len(fake.rows("incident")) == 2
    assert any(getattr(r, "event", None) == "servicenow_incident_unreadable" for r in caplog.records)
