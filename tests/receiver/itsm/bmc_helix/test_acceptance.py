"""The real receiver (HTTP, inbox, dispatcher) with the BMC Helix backend, against the local BMC Helix."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.demo.local_issuer import LocalIssuer
from receiver.itsm.bmc_helix.backend import BmcHelixBackend
from receiver.itsm.markers import correlation_id
from tests.receiver.itsm.bmc_helix.helpers import PASSWORD, USER, settings
from tests.support.alerts import SUBSCRIPTION, alert_body
from tests.support.itsm_fakes.bmc_helix import FakeBmc
from tests.support.receivers import RunningReceiver, start_receiver

VM_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/vm-app-01"
MAX_ATTEMPTS = 3


def _refused_logins(fake: FakeBmc) -> int:
    return sum(1 for r in list(fake.requests) if r.path == "/api/jwt/login" and r.status == 401)


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    """One local Azure AD stand-in per module."""
    with LocalIssuer() as local_issuer:
        yield local_issuer


@pytest.fixture
def instance(fake: FakeBmc) -> FakeBmc:
    """The local BMC with the CI the harness's alerts name."""
    fake.add_ci("vm-app-01", cloud_id=VM_ID)
    return fake


def _receiver(
    tmp_path: Path, issuer: LocalIssuer, fake: FakeBmc, env: dict[str, Any] | None = None, **backend_settings: Any
) -> RunningReceiver:
    return start_receiver(tmp_path, issuer, backend=BmcHelixBackend(settings(fake, **backend_settings)), **(env or {}))


def _incident(fake: FakeBmc, n: int) -> dict[str, Any]:
    alert = str(alert_body(n)["data"]["essentials"]["alertId"])
    [row] = fake.incident(**{"Vendor Ticket Number": correlation_id(alert)})
    return row


def test_fired_three_times_then_resolved_makes_one_bound_resolved_incident(
    tmp_path: Path, issuer: LocalIssuer, instance: FakeBmc, capsys: pytest.CaptureFixture[str]
) -> None:
    from receiver.cli.commands import main as cli_main

    with _receiver(tmp_path, issuer, instance) as rx:
        token = issuer.mint()
        for _ in range(3):
            assert rx.post_alert(alert_body(1), token).status_code == 202
        assert rx.post_alert(alert_body(1, "Resolved"), token).status_code == 202
        assert rx.wait_dispatched() == {"pending": 0, "done": 2, "parked": 0}
        assert rx.metric("secure_export_bmc_http_requests_total", form="HPD:IncidentInterface_Create") == 1
        db = rx.db_path
    incident = _incident(instance, 1)
    alert = str(alert_body(1)["data"]["essentials"]["alertId"])
    assert cli_main("trace", [alert, "--json", "--db", db]) == 0
    traced = json.loads(capsys.readouterr().out)
    assert [w["number"] for w in traced["work_items"]] == [incident["Incident Number"]]
    assert incident["HPD_CI"] == "vm-app-01" and incident["Status"] == "Resolved"
    assert len(instance.incidents) == 1 and len(instance.work_log(incident["Incident Number"])) == 1
    assert len(instance.logouts) == 1  # the session is released at shutdown


def test_resolved_before_fired_over_http_leaves_no_open_incident(
    tmp_path: Path, issuer: LocalIssuer, instance: FakeBmc
) -> None:
    with _receiver(tmp_path, issuer, instance) as rx:
        token = issuer.mint()
        assert rx.post_alert(alert_body(1, "Resolved"), token).status_code == 202
        rx.wait_dispatched()
        assert rx.post_alert(alert_body(1), token).status_code == 202
        rx.wait_dispatched()
    assert _incident(instance, 1)["Status"] == "Resolved" and len(instance.incidents) == 1


def test_wrong_credentials_pause_dispatch_and_readyz_says_why_until_fixed(
    tmp_path: Path, issuer: LocalIssuer, instance: FakeBmc
) -> None:
    with _receiver(
        tmp_path, issuer, instance, env={"dispatch_max_attempts": MAX_ATTEMPTS}, password="not-the-password"
    ) as rx:
        token = issuer.mint()
        for n in (1, 2, 3):
            assert rx.post_alert(alert_body(n), token).status_code == 202
        dispatcher = rx.runtime.dispatcher
        rx.wait_until(lambda: dispatcher.paused_reason is not None, what="dispatching to pause")
        refused = _refused_logins(instance)
        # Paused for longer than the attempts' budget: every readiness re-check (at least the backoff
        # cap apart) tries to log in; 2 x max attempts of them and still nothing parked.
        rx.wait_until(
            lambda: _refused_logins(instance) >= refused + 2 * MAX_ATTEMPTS,
            what=f"{2 * MAX_ATTEMPTS} readiness re-checks while paused",
        )
        assert not [r for r in instance.requests if "/entry/" in r.path]
        assert rx.inbox_counts() == {"pending": 3, "done": 0, "parked": 0}
        assert rx.runtime.dispatcher.paused_reason and "refused the login" in rx.runtime.dispatcher.paused_reason
        ready = rx.get("/readyz")
        assert ready.status_code == 503 and "SECURE_EXPORT_BMC_PASSWORD" in ready.json()["detail"]
        assert "not-the-password" not in ready.text
        instance.add_user(USER, "not-the-password")  # the operator fixes the account
        assert rx.wait_dispatched() == {"pending": 0, "done": 3, "parked": 0}
        assert rx.get("/readyz").status_code == 200
    assert len(instance.incidents) == 3


def test_an_outage_is_retried_from_the_inbox(tmp_path: Path, issuer: LocalIssuer, instance: FakeBmc) -> None:
    with _receiver(tmp_path, issuer, instance, env={"dispatch_max_attempts": 50}) as rx:
        outage = instance.start_outage(503, retry_after="0", path_prefix="/api/arsys/")
        assert rx.post_alert(alert_body(1), issuer.mint()).status_code == 202
        rx.wait_until(lambda: outage.hits >= 3, what="three failed attempts")
        assert rx.inbox_counts()["pending"] == 1 and rx.get("/readyz").status_code == 200
        instance.end_outage()
        assert rx.wait_dispatched() == {"pending": 0, "done": 1, "parked": 0}
    assert _incident(instance, 1)["Status"] == "New"


def test_a_refused_incident_is_parked_with_bmcs_own_message(
    tmp_path: Path, issuer: LocalIssuer, instance: FakeBmc, capsys: pytest.CaptureFixture[str]
) -> None:
    from receiver.cli.commands import main as cli_main

    with _receiver(tmp_path, issuer, instance, customer_last_name="Nobody") as rx:
        assert rx.post_alert(alert_body(1), issuer.mint()).status_code == 202
        assert rx.wait_dispatched()["parked"] == 1
        db = rx.db_path
    assert cli_main("work-items", ["--failed", "--json", "--db", db]) == 0
    [parked] = json.loads(capsys.readouterr().out)
    assert "ERROR 1291001: The customer is not a valid People record" in parked["last_error"]
    assert not instance.incidents


def test_a_receiver_process_configured_from_the_environment(
    tmp_path: Path, issuer: LocalIssuer, instance: FakeBmc
) -> None:
    env = {"itsm": "bmc-helix", "bmc_url": instance.url, "bmc_username": USER, "bmc_password": PASSWORD}
    with start_receiver(tmp_path, issuer, subprocess=True, **env) as rx:
        assert rx.post_alert(alert_body(1), issuer.mint()).status_code == 202
        rx.wait_dispatched()
        assert rx.stop() == 0
        assert PASSWORD not in rx.stderr_text()
    assert _incident(instance, 1)["HPD_CI"] == "vm-app-01"
    assert len(instance.logouts) == 1


def test_an_in_process_receiver_gets_this_backend_from_its_settings_not_the_process_environment(
    tmp_path: Path, issuer: LocalIssuer, instance: FakeBmc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variables come as a mapping (``load_settings(environ)``): a backend reading ``os.environ`` finds none."""
    for name in [name for name in os.environ if name.upper().startswith("SECURE_EXPORT_")]:
        monkeypatch.delenv(name)
    env = {"itsm": "bmc-helix", "bmc_url": instance.url, "bmc_username": USER, "bmc_password": PASSWORD}
    with start_receiver(tmp_path, issuer, **env) as rx:
        assert isinstance(rx.backend, BmcHelixBackend)
        assert rx.post_alert(alert_body(1), issuer.mint()).status_code == 202
        rx.wait_dispatched()
        assert rx.inbox_counts()["done"] == 1
    assert _incident(instance, 1)["HPD_CI"] == "vm-app-01"
