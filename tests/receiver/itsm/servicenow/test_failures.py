"""Rate limits, outages, timeouts, refusals, OAuth expiry and wrong credentials, against the local ServiceNow."""

from __future__ import annotations

import time

import pytest

from receiver.alerts.events import Condition
from receiver.itsm.base import CredentialsRejected, PermanentBackendError, TransientBackendError
from receiver.itsm.servicenow.backend import ServiceNowBackend
from tests.receiver.itsm.servicenow.helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USER,
    ManualClock,
    event,
    settings,
    started_backend,
)
from tests.support.itsm_fakes.loopback import Fault
from tests.support.itsm_fakes.servicenow import FakeServiceNow

pytestmark = pytest.mark.anyio


async def test_429_is_transient_with_retry_after_capped(fake: FakeServiceNow) -> None:
    # No waiting in the backend (rate_limit_wait_seconds=0): the 429 reaches the dispatcher at once.
    async with started_backend(fake, retry_after_cap_seconds=30, rate_limit_wait_seconds=0) as backend:
        fake.rate_limit(1, retry_after=7)
        with pytest.raises(TransientBackendError) as small:
            await backend.apply(event(1))
        assert small.value.retry_after == 7
        assert "Rate limit exceeded" in str(small.value)
        fake.rate_limit(1, retry_after=3600)
        with pytest.raises(TransientBackendError) as big:
            await backend.apply(event(1))
        assert big.value.retry_after == 30
        await backend.apply(event(1))
    assert len(fake.rows("incident")) == 1


async def test_a_429_is_waited_out_and_sent_again_without_failing_the_delivery(fake: FakeServiceNow) -> None:
    async with started_backend(fake) as backend:
        fake.rate_limit(2, retry_after=1, path_prefix="/api/now/table/incident")
        started = time.monotonic()
        await backend.apply(event(1))
        took = time.monotonic() - started
    assert 2.0 <= took < 10
    assert len(fake.rows("incident")) == 1
    assert len([r for r in fake.table_requests("incident") if r.status == 429]) == 2


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
async def test_server_errors_are_transient(fake: FakeServiceNow, status: int) -> None:
    """5xx and 408 Request Timeout are temporary (retried); guards dropping 408 from the transient set."""

    async with started_backend(fake) as backend:
        fake.inject(Fault("status", status, remaining=1, path_prefix="/api/now/table/incident"))
        with pytest.raises(TransientBackendError, match=str(status)) as caught:
            await backend.apply(event(1))
        assert not isinstance(caught.value, CredentialsRejected)


async def test_timeouts_and_dropped_connections_are_transient(fake: FakeServiceNow) -> None:
    async with started_backend(fake, timeout_seconds=0.3) as backend:
        fake.slow_next(1, 1.0, path_prefix="/api/now/table/incident")
        with pytest.raises(TransientBackendError, match="did not answer"):
            await backend.apply(event(1))
        fake.drop_next(1, path_prefix="/api/now/table/incident")
        with pytest.raises(TransientBackendError, match="cannot reach"):
            await backend.apply(event(1))
        await backend.apply(event(1))
    assert len(fake.rows("incident")) == 1


async def test_a_hibernating_instance_page_is_transient(fake: FakeServiceNow) -> None:
    async with started_backend(fake) as backend:
        original = fake.handle
        fake.handle = lambda *a: (200, {"Content-Type": "text/html"}, b"<html>Instance hibernating</html>")
        with pytest.raises(TransientBackendError, match="no JSON"):
            await backend.apply(event(1))
        fake.handle = original


@pytest.mark.parametrize("status", [400, 403])
async def test_400_and_403_are_permanent_with_servicenow_s_message(fake: FakeServiceNow, status: int) -> None:
    async with started_backend(fake) as backend:
        fake.inject(Fault("status", status, remaining=1, method="POST"))
        with pytest.raises(PermanentBackendError, match=f"HTTP {status} Injected failure: HTTP {status} injected"):
            await backend.apply(event(1))


async def test_a_data_policy_refusal_is_permanent_and_names_the_fields(fake: FakeServiceNow) -> None:
    async with started_backend(fake) as backend:
        await backend.apply(event(1))
        # Simulate a stricter instance: the resolution PATCH loses its close_code on the way.
        original = fake._update

        def strip(table, sys_id, body, params, who):
            return original(table, sys_id, {k: v for k, v in body.items() if k != "close_code"}, params, who)

        fake._update = strip
        with pytest.raises(PermanentBackendError, match="Resolution code"):
            await backend.apply(event(1, Condition.RESOLVED))


async def test_invalid_close_code_stops_start_with_the_valid_choices(fake: FakeServiceNow) -> None:
    backend = ServiceNowBackend(settings(fake, close_code="Fixed it"))
    with pytest.raises(
        PermanentBackendError, match="SECURE_EXPORT_SERVICENOW_CLOSE_CODE='Fixed it'.*Solution provided"
    ):
        await backend.start()
    assert not (await backend.readiness()).ready
    await backend.close()


async def test_an_inactive_close_code_is_refused_too(fake: FakeServiceNow) -> None:
    with pytest.raises(PermanentBackendError, match="not an active close_code"):
        async with started_backend(fake, close_code="Closed/Resolved by Caller") as backend:
            await backend.apply(event(1))


async def test_close_code_check_waits_for_an_unreachable_instance(fake: FakeServiceNow) -> None:
    backend = ServiceNowBackend(settings(fake, close_code="Fixed it"))
    fake.start_outage()
    await backend.start()  # does not raise: the receiver keeps taking alerts
    fake.end_outage()
    with pytest.raises(PermanentBackendError, match="Fixed it"):
        await backend.apply(event(1, Condition.RESOLVED))
    await backend.close()


@pytest.mark.parametrize("grant", ["oauth-client-credentials", "oauth-password"])
async def test_oauth_token_is_reused_and_refreshed_before_expiry(fake: FakeServiceNow, grant: str) -> None:
    clock = ManualClock()

    async with started_backend(
        fake, clock=clock, auth=grant, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token_refresh_margin_seconds=60
    ) as backend:
        await backend.apply(event(1))
        await backend.apply(event(2))
        assert backend.token_requests == 1
        clock.advance(1800 - 60 - 1)
        await backend.apply(event(3))
        assert backend.token_requests == 1
        clock.advance(2)  # inside the 60 s margin before expires_in (1800 s) runs out
        await backend.apply(event(4))
        assert backend.token_requests == 2
    assert len(fake.rows("incident")) == 4
    assert not [r for r in fake.requests if r.status == 401]
    assert {r.auth for r in fake.requests if r.path.startswith("/api/")} == {"Bearer"}


async def test_a_token_revoked_early_is_refreshed_once_and_the_call_retried(fake: FakeServiceNow) -> None:
    async with started_backend(
        fake, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, username=None, password=None
    ) as backend:
        await backend.apply(event(1))
        fake.revoke_tokens()
        await backend.apply(event(1, Condition.RESOLVED))
        assert backend.token_requests == 2
    [incident] = fake.rows("incident")
    assert incident["state"] == "6"
    assert len([r for r in fake.requests if r.status == 401]) == 1


async def test_wrong_basic_credentials_make_readiness_fail_with_the_reason(fake: FakeServiceNow) -> None:
    async with started_backend(fake, password="wrong-password") as backend:
        readiness = await backend.readiness()
        assert not readiness.ready
        assert "refused the credentials" in readiness.reason and "401" in readiness.reason
        assert "wrong-password" not in readiness.reason
        with pytest.raises(CredentialsRejected):
            await backend.apply(event(1))
    assert not fake.rows("incident")


async def test_wrong_oauth_secret_makes_readiness_fail_without_leaking_it(fake: FakeServiceNow) -> None:
    async with started_backend(
        fake, client_id=CLIENT_ID, client_secret="bad-secret", username=USER, password=PASSWORD
    ) as backend:
        readiness = await backend.readiness()
        assert not readiness.ready and "access_denied" in readiness.reason
        assert "bad-secret" not in readiness.reason and PASSWORD not in readiness.reason
        with pytest.raises(TransientBackendError):
            await backend.apply(event(1))


async def test_an_outage_keeps_readiness_up_so_alerts_keep_flowing_into_the_inbox(fake: FakeServiceNow) -> None:
    async with started_backend(fake) as backend:
        fake.start_outage()
        readiness = await backend.readiness()
        assert readiness.ready and "unreachable" in readiness.reason
        fake.end_outage()


async def test_readiness_is_cached(fake: FakeServiceNow) -> None:
    async with started_backend(fake, readiness_cache_seconds=60) as backend:
        for _ in range(5):
            assert (await backend.readiness()).ready
        assert len(fake.table_requests("incident", "GET")) == 1


async def test_http_calls_are_counted_by_table_and_status(fake: FakeServiceNow) -> None:
    async with started_backend(fake, rate_limit_wait_seconds=0) as backend:
        fake.rate_limit(1, path_prefix="/api/now/table/incident")
        with pytest.raises(TransientBackendError):
            await backend.apply(event(1))
        await backend.apply(event(1))
        calls = dict(backend.http_calls)
    assert calls[("incident", "429")] == 1 and calls[("incident", "201")] == 1
    assert calls[("sys_choice", "200")] == 1
