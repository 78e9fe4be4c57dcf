"""Wrong ServiceNow credentials pause dispatching instead of burning the alerts' retry attempts.

A real receiver (HTTP, inbox, dispatcher) with the ServiceNow backend, against the local ServiceNow:
the integration user's password is wrong for many times what ``max_attempts`` x the backoff cap
takes to park a row; once the operator fixes the account, every alert is applied exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.demo.local_issuer import LocalIssuer
from receiver.itsm.markers import correlation_id
from receiver.itsm.servicenow.backend import ServiceNowBackend
from tests.receiver.itsm.servicenow.helpers import USER, refused_gets, settings
from tests.support.alerts import alert_body
from tests.support.itsm_fakes.servicenow import FakeServiceNow
from tests.support.receivers import start_receiver

MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    """One local Azure AD stand-in per module."""
    with LocalIssuer() as local_issuer:
        yield local_issuer


def _alert_id(n: int) -> str:
    return str(alert_body(n)["data"]["essentials"]["alertId"])


def test_wrong_credentials_for_longer_than_the_retry_budget_park_nothing_once_fixed(
    tmp_path: Path, issuer: LocalIssuer, fake: FakeServiceNow
) -> None:
    backend = ServiceNowBackend(settings(fake, password="not-the-password"))
    with start_receiver(tmp_path, issuer, backend=backend, dispatch_max_attempts=MAX_ATTEMPTS) as rx:
        token = issuer.mint()
        for n in (1, 2, 3, 4):
            assert rx.post_alert(alert_body(n), token).status_code == 202
        for n in (1, 2):
            assert rx.post_alert(alert_body(n, "Resolved"), token).status_code == 202
        dispatcher = rx.runtime.dispatcher
        rx.wait_until(lambda: dispatcher.paused_reason is not None, what="dispatching to pause")
        probes = refused_gets(fake, probe=True)
        # Once the pause loop has re-checked, no apply started before the pause is still under way.
        rx.wait_until(lambda: refused_gets(fake, probe=True) > probes, what="the first re-check")
        applies, probes = refused_gets(fake, probe=False), refused_gets(fake, probe=True)
        # Paused for longer than the attempts' budget: 2 x MAX_ATTEMPTS readiness re-checks, each
        # at least the backoff cap apart (the longest wait between two attempts of a row).
        rx.wait_until(
            lambda: refused_gets(fake, probe=True) >= probes + 2 * MAX_ATTEMPTS,
            what=f"{2 * MAX_ATTEMPTS} readiness re-checks while paused",
        )
        assert refused_gets(fake, probe=False) == applies  # no apply while paused
        assert rx.inbox_counts() == {"pending": 6, "done": 0, "parked": 0}
        assert rx.runtime.dispatcher.paused_reason and "refused the credentials" in rx.runtime.dispatcher.paused_reason
        ready = rx.get("/readyz")
        assert ready.status_code == 503 and "refused the credentials" in ready.json()["detail"]
        assert not fake.rows("incident")

        fake.add_user(USER, "not-the-password")  # the operator fixes the account
        counts = rx.wait_dispatched()
        assert counts == {"pending": 0, "done": 6, "parked": 0}
        assert rx.get("/readyz").status_code == 200
        assert rx.runtime.dispatcher.paused_reason is None
        assert rx.metric("secure_export_dispatch_parked_total") == 0
    creates = [r for r in fake.requests if r.method == "POST" and r.path == "/api/now/table/incident"]
    assert len(creates) == 4 and len(fake.rows("incident")) == 4
    for n in (1, 2, 3, 4):
        [incident] = fake.rows("incident", correlation_id=correlation_id(_alert_id(n)))
        assert incident["state"] == ("6" if n <= 2 else "1")
        assert len(fake.journal(incident["sys_id"])) == (2 if n <= 2 else 1)  # each event applied once


def test_an_outage_does_not_pause_dispatching_and_still_uses_up_attempts(
    tmp_path: Path, issuer: LocalIssuer, fake: FakeServiceNow
) -> None:
    """ServiceNow stays ready through a 503 outage (so Azure keeps reaching the inbox): no pause."""
    backend = ServiceNowBackend(settings(fake))
    with start_receiver(tmp_path, issuer, backend=backend, dispatch_max_attempts=MAX_ATTEMPTS) as rx:
        outage = fake.start_outage(503, path_prefix="/api/now/table/incident")
        assert rx.post_alert(alert_body(1), issuer.mint()).status_code == 202
        counts = rx.wait_dispatched()
        assert counts == {"pending": 0, "done": 0, "parked": 1}
        assert rx.get("/readyz").status_code == 200
        assert rx.runtime.dispatcher.pauses == 0
        assert rx.metric("secure_export_dispatch_parked_total", reason="max_attempts") == 1
        fake.end_outage()
    assert outage.hits >= MAX_ATTEMPTS
