"""A password mounted as a file is read again when ServiceNow refuses it: rotation without a restart.

The ServiceNow admin rotates the integration user's password; until the secret file catches up the
receiver is refused (dispatching pauses, nothing is parked); once the file holds the new password
the next attempt re-reads it and every alert lands, in the same running receiver.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.demo.local_issuer import LocalIssuer
from receiver.itsm.servicenow.backend import ServiceNowBackend
from receiver.itsm.servicenow.settings import ServiceNowSettings, ServiceNowSettingsError
from tests.receiver.itsm.servicenow.helpers import PASSWORD, USER, refused_gets
from tests.support.alerts import alert_body
from tests.support.itsm_fakes.backends import started
from tests.support.itsm_fakes.servicenow import FakeServiceNow
from tests.support.receivers import start_receiver

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "rotated: purple monkey dishwasher"


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as local_issuer:
        yield local_issuer


def _settings(fake: FakeServiceNow, password_file: Path) -> ServiceNowSettings:
    return ServiceNowSettings.load(
        url=fake.url, username=USER, password_file=str(password_file), readiness_cache_seconds=0, timeout_seconds=5
    )


def test_a_rotated_password_file_is_picked_up_by_the_running_receiver(
    tmp_path: Path, issuer: LocalIssuer, fake: FakeServiceNow
) -> None:
    secret = tmp_path / "servicenow-password"
    secret.write_text(PASSWORD + "\n")  # mounted secrets often end with a newline
    backend = ServiceNowBackend(_settings(fake, secret))
    with start_receiver(tmp_path, issuer, backend=backend, dispatch_max_attempts=2) as rx:
        token = issuer.mint()
        assert rx.post_alert(alert_body(1), token).status_code == 202
        rx.wait_until(lambda: len(fake.rows("incident")) == 1, what="the first incident")

        fake.add_user(USER, NEW_PASSWORD)  # rotated in ServiceNow; the file still holds the old one
        assert rx.post_alert(alert_body(2), token).status_code == 202
        rx.wait_until(lambda: rx.runtime.dispatcher.paused_reason is not None, what="dispatching to pause")
        probes = refused_gets(fake, probe=True)
        rx.wait_until(lambda: refused_gets(fake, probe=True) >= probes + 3, what="three re-checks while paused")
        assert rx.inbox_counts()["parked"] == 0 and len(fake.rows("incident")) == 1

        secret.write_text(NEW_PASSWORD + "\n")  # the platform updates the mounted secret
        rx.wait_until(lambda: len(fake.rows("incident")) == 2, what="the second incident after the file changed")
        assert rx.wait_dispatched() == {"pending": 0, "done": 2, "parked": 0}
        assert rx.runtime.dispatcher.paused_reason is None
    assert NEW_PASSWORD not in rx.stderr_text() and PASSWORD not in rx.stderr_text()


async def test_an_unchanged_file_is_not_retried_and_a_bad_file_is_named(tmp_path: Path, fake: FakeServiceNow) -> None:
    secret = tmp_path / "pw"
    secret.write_text("wrong")
    async with started(ServiceNowBackend(_settings(fake, secret))) as backend:
        reason = (await backend.readiness()).reason
    assert "refused the credentials" in reason
    refused = [r.path for r in fake.requests if r.status == 401]
    # start() checks sys_choice, readiness reads incident: each refused once, not retried with the
    # same password since the file did not change.
    assert sorted(refused) == ["/api/now/table/incident", "/api/now/table/sys_choice"]

    with pytest.raises(ServiceNowSettingsError, match="SECURE_EXPORT_SERVICENOW_PASSWORD_FILE: cannot read"):
        ServiceNowSettings.load(url=fake.url, username=USER, password_file=str(tmp_path / "absent"))
    with pytest.raises(ServiceNowSettingsError, match="not both"):
        ServiceNowSettings.load(url=fake.url, username=USER, password="x", password_file=str(secret))
