"""``/metrics`` of a ServiceNow-backed receiver: the backend's HTTP calls and token requests, and
token-verification counters whose help says what they count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from receiver.demo.local_issuer import LocalIssuer
from receiver.itsm.counters import register_counters
from receiver.itsm.servicenow.backend import ServiceNowBackend
from tests.receiver.itsm.servicenow.helpers import CLIENT_ID, CLIENT_SECRET, PASSWORD, settings
from tests.support.alerts import alert_body
from tests.support.itsm_fakes.backends import started
from tests.support.itsm_fakes.servicenow import FakeServiceNow
from tests.support.receivers import RunningReceiver, start_receiver
from tests.support.tokens import flipped_signature

pytestmark = pytest.mark.anyio

CALLS = "secure_export_servicenow_http_requests_total"
TOKENS = "secure_export_servicenow_token_requests_total"


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    """One local Azure AD stand-in per module."""
    with LocalIssuer() as local_issuer:
        yield local_issuer


def _families(rx: RunningReceiver) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(rx.metrics())}


def _samples(rx: RunningReceiver, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(rx.metrics()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _table(path: str) -> str:
    if path == "/api/global/em/jsonv2":
        return "em_event"
    return path.removeprefix("/api/now/table/").split("/", 1)[0]


def test_metrics_show_servicenow_calls_by_table_method_and_status(
    tmp_path: Path, issuer: LocalIssuer, fake: FakeServiceNow
) -> None:
    backend = ServiceNowBackend(settings(fake))
    with start_receiver(tmp_path, issuer, backend=backend) as rx:
        token = issuer.mint()
        fake.rate_limit(1, retry_after=0, path_prefix="/api/now/table/incident")
        assert rx.post_alert(alert_body(1), token).status_code == 202
        rx.wait_dispatched()
        assert rx.post_alert(alert_body(1, "Resolved"), token).status_code == 202
        rx.wait_dispatched()
        samples = _samples(rx, CALLS)
        text = rx.metrics()
    # Exactly what the instance saw, request for request (the fake records every call).
    seen = Counter((_table(r.path), r.method, str(r.status)) for r in fake.requests if r.path.startswith("/api/"))
    shown = {(dict(k)["table"], dict(k)["method"], dict(k)["status"]): v for k, v in samples.items()}
    assert shown == {key: float(count) for key, count in seen.items()}
    assert shown[("incident", "POST", "201")] == 1
    assert shown[("incident", "GET", "429")] == 1
    assert shown[("incident", "PATCH", "200")] == 1
    assert shown[("sys_choice", "GET", "200")] == 1
    # Bounded labels only: no URL, query, host or credential.
    service_lines = [line for line in text.splitlines() if "servicenow" in line]
    for forbidden in (fake.url, "sysparm", "?", "correlation_id", PASSWORD, "Basic "):
        assert not any(forbidden in line for line in service_lines), forbidden


def test_metrics_show_oauth_token_requests_by_outcome(
    tmp_path: Path, issuer: LocalIssuer, fake: FakeServiceNow
) -> None:
    backend = ServiceNowBackend(
        settings(fake, username=None, password=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    )
    with start_receiver(tmp_path, issuer, backend=backend) as rx:
        token = issuer.mint()
        assert rx.post_alert(alert_body(1), token).status_code == 202
        rx.wait_dispatched()
        fake.revoke_tokens()  # the next call gets a 401, fetches a new token and retries once
        assert rx.post_alert(alert_body(1, "Resolved"), token).status_code == 202
        rx.wait_dispatched()
        tokens = _samples(rx, TOKENS)
        calls = _samples(rx, CALLS)
        text = rx.metrics()
    fetched = [r for r in fake.requests if r.path == "/oauth_token.do"]
    assert len(fetched) == 2
    assert tokens == {(("outcome", "ok"),): 2.0}
    assert sum(v for k, v in calls.items() if dict(k)["status"] == "401") == 1
    assert not any("oauth_token" in dict(k)["table"] for k in calls)  # token requests are not table calls
    assert CLIENT_SECRET not in text and "Bearer" not in text


def test_refused_oauth_credentials_are_counted_as_refused(
    tmp_path: Path, issuer: LocalIssuer, fake: FakeServiceNow
) -> None:
    backend = ServiceNowBackend(
        settings(fake, username=None, password=None, client_id=CLIENT_ID, client_secret="not-the-secret")
    )
    with start_receiver(tmp_path, issuer, backend=backend) as rx:
        assert rx.get("/readyz").status_code == 503
        tokens = _samples(rx, TOKENS)
        text = rx.metrics()
    assert tokens.get((("outcome", "refused"),), 0) >= 1 and (("outcome", "ok"),) not in tokens
    assert "not-the-secret" not in text


def test_token_verification_help_says_failed_signature_checks_are_counted(
    tmp_path: Path, issuer: LocalIssuer, fake: FakeServiceNow
) -> None:
    backend = ServiceNowBackend(settings(fake))
    with start_receiver(tmp_path, issuer, backend=backend) as rx:
        token = issuer.mint()
        assert rx.post_alert(alert_body(1), token).status_code == 202
        assert rx.post_alert(alert_body(1), token).status_code == 202  # the cache answers
        assert rx.post_alert(alert_body(2), flipped_signature(issuer)).status_code == 401
        rsa = rx.metric("secure_export_token_verifications_total", result="rsa")
        hits = rx.metric("secure_export_token_verifications_total", result="cache_hit")
        accepted = rx.metric("secure_export_alerts_accepted_total")
        family = _families(rx)["secure_export_token_verifications"]
    # Two signature checks (one failed) for one token verified and one refused: rsa is not "accepted".
    assert (rsa, hits, accepted) == (2, 1, 2)
    documentation = family.documentation
    assert not documentation.startswith("Tokens accepted")
    assert "every RS256 signature check" in documentation and "failed checks" in documentation


async def test_the_backends_report_their_counters_through_the_typed_interface(fake: FakeServiceNow) -> None:
    """Each family /metrics shows comes from ``metric_families()``, whose sample keys match the labels."""
    from prometheus_client import CollectorRegistry, generate_latest

    from receiver.itsm.base import BackendCounters
    from receiver.itsm.bmc_helix.backend import BmcHelixBackend
    from receiver.itsm.bmc_helix.settings import BmcSettings
    from tests.receiver.itsm.servicenow.helpers import event

    async with started(ServiceNowBackend(settings(fake))) as backend:
        await backend.apply(event(1))
    bmc = BmcHelixBackend(BmcSettings.load({}, url="https://acme-restapi.onbmc.com", username="u", password="p"))
    for source in (backend, bmc):
        assert isinstance(source, BackendCounters)
        for family in source.metric_families():
            assert all(len(key) == len(family.labels) for key in family.samples), family.name
    families = {family.name: family for family in backend.metric_families()}
    assert set(families) == {
        "secure_export_servicenow_http_requests",
        "secure_export_servicenow_token_requests",
        "secure_export_routing_unresolved_names",
    }
    assert families["secure_export_servicenow_http_requests"].samples[("incident", "POST", "201")] == 1.0
    assert families["secure_export_routing_unresolved_names"].kind == "gauge"
    registry = CollectorRegistry()
    register_counters(registry, backend)
    text = generate_latest(registry).decode()
    assert 'secure_export_servicenow_http_requests_total{method="POST",status="201",table="incident"} 1.0' in text
    assert {f.name for f in bmc.metric_families()} == {
        "secure_export_bmc_http_requests",
        "secure_export_bmc_login_requests",
    }
