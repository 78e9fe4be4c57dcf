"""Fixtures: one fresh local ServiceNow per test (own port, own data: safe under xdist)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.receiver.itsm.servicenow.helpers import start_fake
from tests.support.itsm_fakes.servicenow import FakeServiceNow


@pytest.fixture
def fake() -> Iterator[FakeServiceNow]:
    """A started fake ServiceNow with a user, an OAuth client and one CI."""
    instance = start_fake()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(autouse=True)
def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Run every log call of the backend (a bad ``extra`` key only fails when the level is enabled)."""
    caplog.set_level(logging.DEBUG, logger="secure_export.servicenow")
