"""Shared helpers for the ServiceNow tests: a started fake, backends bound to it, sample events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from receiver.alerts.events import AlertEvent, Condition
from receiver.itsm.servicenow.backend import ServiceNowBackend
from receiver.itsm.servicenow.settings import ServiceNowSettings
from tests.support.itsm_fakes.backends import started
from tests.support.itsm_fakes.servicenow import FakeServiceNow

USER = "svc-secure-export"
PASSWORD = "correct horse battery staple"
CLIENT_ID = "3f2a9c1e5b7d4e60a8f1c2d3e4f5a6b7"
CLIENT_SECRET = "client-secret-value"
SUBSCRIPTION = "5a1a8e2c-0000-4000-8000-00000000c0de"
VM_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/vm-web-01"


def alert_id(n: int) -> str:
    """An Azure alert instance id."""
    return f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/00000000-0000-4000-8000-{n:012d}"


def event(n: int = 1, condition: Condition = Condition.FIRED, **overrides: Any) -> AlertEvent:
    """A metric alert event on ``vm-web-01`` as the dispatcher would build it."""
    aid = overrides.pop("alert_id", alert_id(n))
    fields: dict[str, Any] = {
        "alert_id": aid,
        "condition": condition,
        "correlation_key": aid,
        "rule": "cpu-high",
        "severity": "Sev1",
        "signal_type": "Metric",
        "monitoring_service": "Platform",
        "target_ids": (VM_ID,),
        "configuration_items": ("vm-web-01",),
        "description": "CPU above 90 %",
        "fired_at": datetime(2026, 11, 26, 6, 0, tzinfo=UTC),
        "resolved_at": datetime(2026, 11, 26, 6, 30, tzinfo=UTC) if condition is Condition.RESOLVED else None,
        "investigation_link": "https://portal.azure.com/#view/Microsoft_Azure_Monitoring_Alerts/Investigation",
        "condition_summary": "Percentage CPU Average GreaterThan 90 (value 97.5)",
    }
    fields.update(overrides)
    fields.setdefault(
        "essentials",
        {
            "alertId": aid,
            "alertRule": fields["rule"],
            "severity": fields["severity"],
            "monitorCondition": str(condition),
            "alertTargetIDs": list(fields["target_ids"]),
            "configurationItems": list(fields["configuration_items"]),
            "originAlertId": "abc",
        },
    )
    return AlertEvent(**fields)


def start_fake() -> FakeServiceNow:
    """A running fake with a basic-auth user, an OAuth client and the VM's CI."""
    fake = FakeServiceNow().start()
    fake.add_user(USER, PASSWORD)
    fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET)
    fake.insert("cmdb_ci", {"name": "vm-web-01", "object_id": VM_ID, "sys_class_name": "cmdb_ci_vm_instance"})
    return fake


def refused_gets(fake: FakeServiceNow, *, probe: bool) -> int:
    """GETs of incident refused with 401: readiness probes (``sysparm_limit=1``) or the applies' lookups.

    While dispatching pauses, the probes go on and the lookups stop: a test waits for a number of
    probes instead of sleeping, then checks that no lookup happened meanwhile.
    """
    return sum(
        r.status == 401
        and r.method == "GET"
        and r.path.startswith("/api/now/table/incident")
        and (r.params.get("sysparm_limit") == "1") == probe
        for r in list(fake.requests)
    )


def settings(fake: FakeServiceNow, **overrides: Any) -> ServiceNowSettings:
    """Backend settings for ``fake`` (basic auth unless overridden)."""
    values: dict[str, Any] = {
        "url": fake.url,
        "username": USER,
        "password": PASSWORD,
        "readiness_cache_seconds": 0,
        "timeout_seconds": 5,
    }
    values.update(overrides)
    return ServiceNowSettings.load(**values)


class ManualClock:
    """A monotonic clock the test moves by hand (TTLs and token lifetimes without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@asynccontextmanager
async def started_backend(
    fake: FakeServiceNow, *, clock: Callable[[], float] = time.monotonic, **overrides: Any
) -> AsyncIterator[ServiceNowBackend]:
    """A backend against ``fake`` (settings overridden by ``overrides``), started, and closed on the way out."""
    backend = ServiceNowBackend(settings(fake, **overrides), clock=clock)
    async with started(backend):
        yield backend
