"""Failures against the local BMC: sessions, rate limits, outages, refusals, readiness."""

from __future__ import annotations

import pytest

from receiver.alerts.events import Condition
from receiver.itsm.base import CredentialsRejected, PermanentBackendError, TransientBackendError
from receiver.itsm.bmc_helix.backend import BmcHelixBackend
from receiver.itsm.counters import register_counters
from tests.receiver.itsm.bmc_helix.helpers import PASSWORD, ManualClock, event, started_backend
from tests.support.itsm_fakes.bmc_helix import FakeBmc

pytestmark = pytest.mark.anyio


async def _raises(backend: BmcHelixBackend, kind: type[Exception], *events) -> Exception:
    for item in events[:-1]:
        await backend.apply(item)
    with pytest.raises(kind) as caught:
        await backend.apply(events[-1])
    return caught.value


async def test_one_login_serves_many_calls_and_close_logs_out(fake: FakeBmc) -> None:
    async with started_backend(fake) as backend:
        for n in range(1, 4):
            await backend.apply(event(n))
            await backend.apply(event(n, Condition.RESOLVED))
    assert len(fake.logins) == 1 and len(fake.logouts) == 1
    assert not fake.tokens  # released on the server
    assert all(r.auth == "AR-JWT" for r in fake.requests if "/entry/" in r.path)


async def test_the_token_is_renewed_before_it_expires(fake: FakeBmc) -> None:
    clock = ManualClock()

    async with started_backend(fake, clock=clock) as backend:
        await backend.apply(event(1))
        clock.advance(3600 - 30)  # inside the refresh margin
        await backend.apply(event(2))
    assert len(fake.logins) == 2


async def test_a_revoked_token_is_replaced_once_and_the_call_repeated(fake: FakeBmc) -> None:
    async with started_backend(fake) as backend:
        await backend.apply(event(1))
        fake.revoke_tokens()
        await backend.apply(event(1, Condition.RESOLVED))
    assert len(fake.logins) == 2
    assert fake.incidents[0]["Status"] == "Resolved"
    assert [r.status for r in fake.requests].count(401) == 1


async def test_wrong_password_is_credentials_rejected_and_readiness_says_why(fake: FakeBmc) -> None:
    async with started_backend(fake, password="wrong") as backend:
        error = await _raises(backend, CredentialsRejected, event(1))
        assert isinstance(error, TransientBackendError)  # alerts wait in the inbox
        assert "refused the login of 'svc-azure-monitor'" in str(error) and "623" in str(error)
        assert "wrong" not in str(error)
        ready = await backend.readiness()
        assert not ready.ready and "SECURE_EXPORT_BMC_PASSWORD" in ready.reason
    assert not fake.incidents


async def test_rate_limit_and_maintenance_carry_retry_after(fake: FakeBmc) -> None:
    async with started_backend(fake, retry_after_cap_seconds=20) as backend:
        await backend.apply(event(1))
        fake.rate_limit(1, retry_after=7, path_prefix="/api/arsys/")
        limited = await _raises(backend, TransientBackendError, event(1, Condition.RESOLVED))
        assert limited.retry_after == 7 and "429" in str(limited)
        outage = fake.start_outage(503, retry_after="12", path_prefix="/api/arsys/")
        down = await _raises(backend, TransientBackendError, event(1, Condition.RESOLVED))
        assert down.retry_after == 12 and "503" in str(down)
        ready = await backend.readiness()
        assert ready.ready and "unreachable" in ready.reason  # an outage must not take the receiver out
        fake.end_outage()
        await backend.apply(event(1, Condition.RESOLVED))
        assert outage.hits >= 2
    assert fake.incidents[0]["Status"] == "Resolved"


async def test_retry_after_is_capped(fake: FakeBmc) -> None:
    async with started_backend(fake, retry_after_cap_seconds=30) as backend:
        fake.rate_limit(1, retry_after=3600, path_prefix="/api/arsys/")
        limited = await _raises(backend, TransientBackendError, event(1))
        assert limited.retry_after == 30


async def test_timeouts_and_dropped_connections_are_transient(fake: FakeBmc) -> None:
    async with started_backend(fake, timeout_seconds=0.3) as backend:
        fake.slow_next(1, 1.0, path_prefix="/api/arsys/")
        slow = await _raises(backend, TransientBackendError, event(1))
        assert "did not answer" in str(slow)
        fake.drop_next(1, path_prefix="/api/arsys/")
        dropped = await _raises(backend, TransientBackendError, event(1))
        assert "cannot reach BMC" in str(dropped)
        await backend.apply(event(1))
    assert len(fake.incidents) == 1


async def test_a_refusal_is_permanent_with_bmcs_own_message(fake: FakeBmc) -> None:
    async with started_backend(fake, customer_first_name="Nobody", customer_last_name="Here") as backend:
        error = await _raises(backend, PermanentBackendError, event(1))
        message = str(error)
        assert "HPD:IncidentInterface_Create" in message and "HTTP 400" in message
        assert "ERROR 1291001: The customer is not a valid People record" in message and "Nobody Here" in message


async def test_a_misspelt_correlation_field_is_refused_not_ignored(fake: FakeBmc) -> None:
    async with started_backend(fake, correlation_field="Vendor Tciket Number") as backend:
        error = await _raises(backend, PermanentBackendError, event(1))
        assert "ERROR 314: Field does not exist on current form" in str(error)


async def test_metrics_count_calls_by_form_and_logins(fake: FakeBmc) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    async with started_backend(fake) as backend:
        registry = CollectorRegistry()
        register_counters(registry, backend)
        await backend.apply(event(1))
        text = generate_latest(registry).decode()
    assert (
        'secure_export_bmc_http_requests_total{form="HPD:IncidentInterface_Create",method="POST",status="201"} 1.0'
        in text
    )
    assert 'secure_export_bmc_login_requests_total{outcome="ok"} 1.0' in text
    assert PASSWORD not in text
