"""Every status of docs/design.md's HTTP table, over real HTTP on 127.0.0.1 (real tokens, real SQLite)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import httpx
import pytest

from receiver.demo.local_issuer import LocalIssuer
from tests.support.alerts import alert_body
from tests.support.backends import RecordingBackend
from tests.support.receivers import RunningReceiver, start_receiver

LIMIT = 16384


@pytest.fixture(scope="module")
def backend() -> RecordingBackend:
    return RecordingBackend()


@pytest.fixture(scope="module")
def rx(
    tmp_path_factory: pytest.TempPathFactory, issuer: LocalIssuer, backend: RecordingBackend
) -> Iterator[RunningReceiver]:
    with start_receiver(tmp_path_factory.mktemp("http"), issuer, backend=backend, max_body_bytes=LIMIT) as running:
        yield running


def _assert_json_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["detail"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    if code is not None:
        assert body["error"] == code
    return body


def _inbox_rows(rx: RunningReceiver, alert_id: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(rx.db_path)
    try:
        return conn.execute("SELECT alert_id, monitor_condition FROM inbox WHERE alert_id = ?", (alert_id,)).fetchall()
    finally:
        conn.close()


def test_valid_alert_gets_202_once_stored(rx: RunningReceiver, issuer: LocalIssuer) -> None:
    body = alert_body("accept-1")
    response = rx.post_alert(body, issuer.mint())
    assert response.status_code == 202
    answer = response.json()
    alert_id = body["data"]["essentials"]["alertId"]
    assert answer == {"status": "accepted", "alertId": alert_id, "monitorCondition": "Fired", "duplicate": False}
    # 202 means "on disk": the row is visible to another connection right away.
    assert _inbox_rows(rx, alert_id) == [(alert_id, "Fired")]


def test_v2_token_and_charset_parameter_accepted(rx: RunningReceiver, issuer: LocalIssuer) -> None:
    response = rx.post_alert(
        alert_body("accept-v2"), issuer.mint(version=2), content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 202, response.text


def test_repeated_delivery_gets_202_and_changes_nothing(
    rx: RunningReceiver, issuer: LocalIssuer, backend: RecordingBackend
) -> None:
    body = alert_body("repeat-1")
    alert_id = body["data"]["essentials"]["alertId"]
    first = rx.post_alert(body, issuer.mint())
    assert first.status_code == 202 and first.json()["duplicate"] is False
    rx.wait_dispatched()
    changed = alert_body("repeat-1")
    changed["data"]["essentials"]["description"] = "a different text must not replace the stored one"
    for _ in range(3):
        again = rx.post_alert(changed, issuer.mint())
        assert again.status_code == 202
        assert again.json()["duplicate"] is True
    rx.wait_dispatched()
    assert _inbox_rows(rx, alert_id) == [(alert_id, "Fired")]
    conn = sqlite3.connect(rx.db_path)
    stored = conn.execute("SELECT body FROM inbox WHERE alert_id = ?", (alert_id,)).fetchone()[0]
    conn.close()
    assert json.loads(stored) == body
    assert backend.calls.count((alert_id, "Fired")) == 1
    # The Resolved of the same alert is a different delivery, not a repeat.
    resolved = rx.post_alert(alert_body("repeat-1", "Resolved"), issuer.mint())
    assert resolved.status_code == 202 and resolved.json()["duplicate"] is False


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "broken JSON"),
        (b"\xff\xfe\x00{}", "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "deep nesting"),
        (b'{"schemaId": ' + b"1" * 50_00 + b"}", "huge integer"),
        (b'{"x": 1e999999}', "huge float"),
        (b'{"x": NaN}', "NaN literal"),
        (b"", "empty body"),
    ],
)
def test_not_json_gets_400(rx: RunningReceiver, issuer: LocalIssuer, body: bytes, why: str) -> None:
    _assert_json_error(rx.post_alert(body, issuer.mint()), 400, "invalid_json")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.update(schemaId="somethingElse"),
        lambda b: b.pop("schemaId"),
        lambda b: b["data"]["essentials"].pop("alertId"),
        lambda b: b["data"]["essentials"].update(monitorCondition="Maybe"),
        lambda b: b["data"]["essentials"].update(alertTargetIDs="not-a-list"),
        lambda b: b["data"]["essentials"].update(severity="Sev9"),
        lambda b: b.update(data=[1, 2]),
    ],
    ids=[
        "wrong-schema-id",
        "no-schema-id",
        "no-alert-id",
        "bad-condition",
        "targets-not-list",
        "bad-severity",
        "data-list",
    ],
)
def test_not_common_schema_gets_422(rx: RunningReceiver, issuer: LocalIssuer, mutate) -> None:
    body = alert_body("schema")
    mutate(body)
    _assert_json_error(rx.post_alert(body, issuer.mint()), 422, "not_common_alert_schema")


@pytest.mark.parametrize("body", [b"[]", b'[{"schemaId": "azureMonitorCommonAlertSchema"}]', b'"alert"', b"7", b"null"])
def test_json_that_is_not_an_object_gets_422(rx: RunningReceiver, issuer: LocalIssuer, body: bytes) -> None:
    _assert_json_error(rx.post_alert(body, issuer.mint()), 422, "not_common_alert_schema")


def test_oversized_body_by_content_length_gets_413(rx: RunningReceiver, issuer: LocalIssuer) -> None:
    body = alert_body("big")
    body["data"]["essentials"]["description"] = "x" * (LIMIT + 1)
    _assert_json_error(rx.post_alert(body, issuer.mint()), 413, "payload_too_large")


def test_oversized_streamed_body_without_content_length_gets_413(rx: RunningReceiver, issuer: LocalIssuer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"schemaId": "azureMonitorCommonAlertSchema", "pad": "'
        for _ in range(LIMIT // 512 + 4):
            yield b"y" * 512
        yield b'"}'

    response = rx.client.post(
        "/api/alerts",
        content=chunks(),
        headers={"content-type": "application/json", "authorization": f"Bearer {issuer.mint()}"},
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    _assert_json_error(response, 413, "payload_too_large")
    assert rx.get("/healthz").status_code == 200


def test_small_streamed_body_without_content_length_is_accepted(rx: RunningReceiver, issuer: LocalIssuer) -> None:
    payload = json.dumps(alert_body("chunked")).encode()
    response = rx.client.post(
        "/api/alerts",
        content=iter([payload[:100], payload[100:]]),
        headers={"content-type": "application/json", "authorization": f"Bearer {issuer.mint()}"},
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
def test_wrong_content_type_gets_415(rx: RunningReceiver, issuer: LocalIssuer, content_type: str | None) -> None:
    response = rx.post_alert(alert_body("ct"), issuer.mint(), content_type=content_type)
    _assert_json_error(response, 415, "unsupported_media_type")


def test_content_type_verdicts_hold_on_repeats_and_past_the_memo_bound(
    rx: RunningReceiver, issuer: LocalIssuer
) -> None:
    # The endpoint remembers the verdict per Content-Type spelling: a remembered refusal must stay
    # a refusal, and spellings beyond the memo's bound must still be judged, not waved through.
    token = issuer.mint()
    for attempt in range(2):
        response = rx.post_alert(alert_body(f"memo-bad-{attempt}"), token, content_type="text/plain")
        _assert_json_error(response, 415, "unsupported_media_type")
    for index in range(40):
        good_type, bad_type = (
            f"application/json; charset=utf-8; v={index}",
            f"application/json; charset=latin-1; v={index}",
        )
        good = rx.post_alert(alert_body(f"memo-good-{index}"), token, content_type=good_type)
        assert good.status_code == 202, good.text
        bad = rx.post_alert(alert_body(f"memo-bad-x{index}"), token, content_type=bad_type)
        _assert_json_error(bad, 415, "unsupported_media_type")


def test_missing_or_bad_token_gets_401_with_challenge(rx: RunningReceiver, issuer: LocalIssuer) -> None:
    for token in (None, "not-a-jwt", issuer.mint()[:-8]):
        response = rx.post_alert(alert_body("auth"), token)
        _assert_json_error(response, 401, "invalid_token")
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_several_authorization_headers_get_401(rx: RunningReceiver, issuer: LocalIssuer) -> None:
    token = issuer.mint()
    response = rx.client.post(
        "/api/alerts",
        content=json.dumps(alert_body("two-tokens")).encode(),
        headers=[
            ("content-type", "application/json"),
            ("authorization", f"Bearer {token}"),
            ("authorization", f"Bearer {token}"),
        ],
    )
    _assert_json_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_token_without_role_gets_403(rx: RunningReceiver, issuer: LocalIssuer) -> None:
    response = rx.post_alert(alert_body("role"), issuer.mint(roles=["SomethingElse"]))
    _assert_json_error(response, 403)


def test_unauthenticated_body_is_not_parsed(rx: RunningReceiver) -> None:
    # Authentication comes before parsing: garbage from an anonymous caller is a 401, not a 400.
    response = rx.post_alert(b"{garbage", None)
    _assert_json_error(response, 401, "invalid_token")


def test_subscription_not_allowed_gets_403(tmp_path, issuer: LocalIssuer) -> None:
    allowed = "11111111-2222-3333-4444-555555555555"
    with start_receiver(tmp_path, issuer, backend=RecordingBackend(), allowed_subscriptions=allowed) as rx:
        _assert_json_error(rx.post_alert(alert_body("other-sub"), issuer.mint()), 403, "forbidden")
        assert rx.post_alert(alert_body("our-sub", subscription=allowed), issuer.mint()).status_code == 202
        counts = rx.inbox_counts()
        assert counts["pending"] + counts["done"] == 1


def test_unknown_route_and_wrong_method_get_json(rx: RunningReceiver) -> None:
    _assert_json_error(rx.get("/nowhere"), 404, "not_found")
    _assert_json_error(rx.client.get("/api/alerts"), 405, "method_not_allowed")
    response = rx.client.put("/api/alerts", content=b"{}")
    _assert_json_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


def test_healthz_readyz_metrics(rx: RunningReceiver, issuer: LocalIssuer) -> None:
    assert rx.get("/healthz").json() == {"status": "ok"}
    assert rx.get("/readyz").status_code == 200
    rx.post_alert(alert_body("metrics"), issuer.mint())
    rx.post_alert(b"{", issuer.mint())
    rx.wait_dispatched()
    metrics = rx.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for name in (
        'secure_export_http_requests_total{route="/api/alerts",status="202"}',
        'secure_export_http_requests_total{route="/api/alerts",status="400"}',
        'secure_export_alerts_accepted_total{condition="Fired",duplicate="false"}',
        "secure_export_inbox_depth",
        'secure_export_backend_calls_total{backend="recording",outcome="ok"}',
        'secure_export_token_verifications_total{result="rsa"}',
        "secure_export_jwks_fetches_total",
    ):
        assert name in text, name
    assert rx.metric("secure_export_inbox_depth") == 0


def test_readyz_503_when_backend_not_ready(tmp_path, issuer: LocalIssuer) -> None:
    backend = RecordingBackend()
    with start_receiver(tmp_path, issuer, backend=backend) as rx:
        assert rx.get("/readyz").status_code == 200
        backend.ready = False
        body = _assert_json_error(rx.get("/readyz"), 503, "not_ready")
        assert "not ready" in body["detail"]
        # Not ready for the backend does not mean refusing alerts: they wait in the inbox.
        assert rx.post_alert(alert_body("unready"), issuer.mint()).status_code == 202
        backend.ready = True
        assert rx.get("/readyz").status_code == 200


def test_dispatch_pause_shows_on_metrics(tmp_path, issuer: LocalIssuer) -> None:
    backend = RecordingBackend()
    with start_receiver(tmp_path, issuer, backend=backend) as rx:
        assert rx.metric("secure_export_dispatch_paused") == 0
        backend.ready = False
        backend.outage()
        assert rx.post_alert(alert_body("paused"), issuer.mint()).status_code == 202
        rx.wait_until(lambda: rx.metric("secure_export_dispatch_paused") == 1, 10, "dispatch to pause")
        assert rx.metric("secure_export_dispatch_pauses_total") == 1
        backend.recover()
        backend.ready = True
        rx.wait_dispatched()
        rx.wait_until(lambda: rx.metric("secure_export_dispatch_paused") == 0, 10, "dispatch to resume")
        assert rx.metric("secure_export_dispatch_pauses_total") == 1


def test_readyz_503_until_signing_keys_load(tmp_path) -> None:
    with LocalIssuer() as issuer:
        issuer.failing = True
        with start_receiver(tmp_path, issuer, backend=RecordingBackend(), jwks_min_refetch_seconds=0) as rx:
            body = _assert_json_error(rx.get("/readyz"), 503, "not_ready")
            assert "signing keys" in body["detail"]
            assert rx.get("/healthz").status_code == 200
            assert rx.metric("secure_export_jwks_fetch_errors_total") >= 1
            issuer.failing = False
            rx.wait_until(lambda: rx.get("/readyz").status_code == 200, 10, "keys to load")
            assert rx.post_alert(alert_body("keys"), issuer.mint()).status_code == 202
            # The successful fetch is counted as a fetch, not as an error.
            errors = rx.metric("secure_export_jwks_fetch_errors_total")
            assert rx.metric("secure_export_jwks_fetches_total") == errors + 1


def test_backend_metrics_hook_reaches_metrics(tmp_path, issuer: LocalIssuer) -> None:
    from receiver.itsm.base import MetricFamily

    class Measured(RecordingBackend):
        applied_count = 0

        def metric_families(self) -> list[MetricFamily]:
            return [MetricFamily("fake_itsm_calls", "calls to the fake ITSM tool", (), {(): float(self.applied_count)})]

        async def apply(self, event):
            self.applied_count += 1
            await super().apply(event)

    with start_receiver(tmp_path, issuer, backend=Measured()) as rx:
        assert rx.post_alert(alert_body("hook"), issuer.mint()).status_code == 202
        rx.wait_dispatched()
        assert rx.metric("fake_itsm_calls_total") == 1
