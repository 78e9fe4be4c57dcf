"""Fixtures: one fresh local BMC Helix per test (own port, own data)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.receiver.itsm.bmc_helix.helpers import start_fake
from tests.support.itsm_fakes.bmc_helix import FakeBmc


@pytest.fixture
def fake() -> Iterator[FakeBmc]:
    """A started local BMC with the integration user, the customer and one CI."""
    instance = start_fake()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(autouse=True)
def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Run every log call of the backend (a bad ``extra`` key only fails when the level is enabled)."""
    caplog.set_level(logging.DEBUG, logger="secure_export.bmc_helix")
