"""Event mode: Fired and Resolved become em_event rows that Event Management can deduplicate and bind."""

from __future__ import annotations

import json

import pytest

from receiver.alerts.events import Condition
from receiver.itsm.markers import correlation_id
from tests.receiver.itsm.servicenow.helpers import VM_ID, alert_id, event, started_backend
from tests.support.itsm_fakes.servicenow import FakeServiceNow

pytestmark = pytest.mark.anyio


async def test_fired_and_resolved_produce_em_event_rows(fake: FakeServiceNow) -> None:
    async with started_backend(fake, target="event") as backend:
        await backend.apply(event(1, severity="Sev0"))
        await backend.apply(event(1, Condition.RESOLVED, severity="Sev0"))
    fired, resolved = fake.rows("em_event")
    key = correlation_id(alert_id(1))
    assert fired["message_key"] == resolved["message_key"] == key
    assert (fired["severity"], fired["resolution_state"]) == ("1", "New")
    assert (resolved["severity"], resolved["resolution_state"]) == ("0", "Closing")
    assert fired["source"] == "Azure Monitor" and fired["node"] == "vm-web-01"
    assert fired["resource"] == "vm-web-01" and fired["type"] == "Metric" and fired["metric_name"] == "cpu-high"
    assert fired["time_of_event"] == "2026-11-26 06:00:00" and resolved["time_of_event"] == "2026-11-26 06:30:00"
    info = json.loads(fired["additional_info"])
    assert all(isinstance(value, str) for value in info.values())
    assert info["alertId"] == alert_id(1) and info["alertTargetIDs"] == VM_ID
    assert info["monitorCondition"] == "Fired" and info["severity"] == "Sev0"
    assert not fake.rows("incident")
    assert not fake.table_requests("sys_choice")  # no close_code in event mode


async def test_event_severity_follows_the_azure_connector_map_and_is_configurable(fake: FakeServiceNow) -> None:
    async with started_backend(fake, target="event", event_severity_map={"Sev2": 3}) as backend:
        for n, severity in enumerate(["Sev1", "Sev2", "Sev3", "Sev4"], start=1):
            await backend.apply(event(n, severity=severity))
    assert [r["severity"] for r in fake.rows("em_event")] == ["2", "3", "4", "5"]


async def test_event_mode_surfaces_failures_like_incident_mode(fake: FakeServiceNow) -> None:
    import pytest

    from receiver.itsm.base import TransientBackendError

    async with started_backend(fake, target="event", rate_limit_wait_seconds=0) as backend:
        fake.rate_limit(1, retry_after=2, path_prefix="/api/global/em/jsonv2")
        with pytest.raises(TransientBackendError) as caught:
            await backend.apply(event(1))
        assert caught.value.retry_after == 2
        await backend.apply(event(1))
    assert len(fake.rows("em_event")) == 1
