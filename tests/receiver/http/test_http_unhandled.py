"""An exception nobody expected still gets no 500: a JSON 503 with Retry-After, so Azure retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.demo.local_issuer import LocalIssuer
from tests.support.alerts import alert_body
from tests.support.backends import RecordingBackend
from tests.support.receivers import RunningReceiver, start_receiver


class Boom(RuntimeError):
    pass


def _explode(*_args: object, **_kwargs: object) -> object:
    raise Boom("secret-internal-detail")


@pytest.fixture
def rx(tmp_path: Path, issuer: LocalIssuer) -> Iterator[RunningReceiver]:
    with start_receiver(tmp_path, issuer, backend=RecordingBackend()) as running:
        yield running


def _assert_retryable_503(response_text: str, status: int, headers: dict[str, str]) -> None:
    assert status == 503
    assert headers["retry-after"]
    assert headers["content-type"].startswith("application/json")
    assert "secret-internal-detail" not in response_text and "Traceback" not in response_text


def test_an_unexpected_error_on_the_alert_path_is_a_retryable_503(
    rx: RunningReceiver, issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rx.runtime.verifier, "verify", _explode)
    response = rx.post_alert(alert_body("unhandled-1"), issuer.mint())
    _assert_retryable_503(response.text, response.status_code, dict(response.headers))
    assert response.json()["error"] == "unavailable"
    monkeypatch.undo()
    assert rx.post_alert(alert_body("unhandled-2"), issuer.mint()).status_code == 202


def test_an_unexpected_error_on_another_route_is_a_retryable_503(
    rx: RunningReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rx.runtime.metrics, "render", _explode)
    response = rx.client.get("/metrics")
    _assert_retryable_503(response.text, response.status_code, dict(response.headers))
    assert rx.client.get("/healthz").status_code == 200
