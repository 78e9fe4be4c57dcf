"""Shared helpers for the BMC Helix tests: a started local BMC, backends bound to it, sample events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from receiver.itsm.bmc_helix.backend import BmcHelixBackend
from receiver.itsm.bmc_helix.settings import BmcSettings
from tests.receiver.itsm.servicenow.helpers import SUBSCRIPTION, VM_ID, ManualClock, alert_id, event
from tests.support.itsm_fakes.backends import started
from tests.support.itsm_fakes.bmc_helix import FakeBmc

__all__ = [
    "PASSWORD",
    "SUBSCRIPTION",
    "USER",
    "VM_ID",
    "ManualClock",
    "alert_id",
    "event",
    "settings",
    "start_fake",
    "started_backend",
]

USER = "svc-azure-monitor"
PASSWORD = "correct horse battery staple"


def start_fake() -> FakeBmc:
    """A running local BMC with the integration user, the default customer and the VM's CI."""
    fake = FakeBmc().start()
    fake.add_user(USER, PASSWORD)
    fake.add_person("Azure", "Monitor")
    fake.add_ci("vm-web-01", cloud_id=VM_ID)
    return fake


def settings(fake: FakeBmc, **overrides: Any) -> BmcSettings:
    """Backend settings for ``fake``."""
    values: dict[str, Any] = {
        "url": fake.url,
        "username": USER,
        "password": PASSWORD,
        "readiness_cache_seconds": 0,
        "timeout_seconds": 5,
    }
    return BmcSettings.load({}, **(values | overrides))


@asynccontextmanager
async def started_backend(
    fake: FakeBmc, *, clock: Callable[[], float] = time.monotonic, **overrides: Any
) -> AsyncIterator[BmcHelixBackend]:
    """A backend against ``fake`` (settings overridden by ``overrides``), started, and closed on the way out."""
    backend = BmcHelixBackend(settings(fake, **overrides), clock=clock)
    async with started(backend):
        yield backend
