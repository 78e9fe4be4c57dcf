"""Structured logs: JSON lines with the facts, and never a token, an Authorization header or a secret."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from receiver.demo.local_issuer import LocalIssuer
from receiver.observability.logs import JsonFormatter, redact
from tests.support.alerts import alert_body
from tests.support.backends import RecordingBackend
from tests.support.receivers import start_receiver


def test_request_tokens_never_reach_the_logs(tmp_path: Path, issuer: LocalIssuer) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    good = issuer.mint()
    wrong_audience = issuer.mint(aud="api://someone-else")
    expired = issuer.mint(lifetime=-3600)
    try:
        with start_receiver(tmp_path, issuer, backend=RecordingBackend(), log_level="DEBUG") as rx:
            assert rx.post_alert(alert_body("log-1"), good).status_code == 202
            assert rx.post_alert(alert_body("log-2"), wrong_audience).status_code == 401
            assert rx.post_alert(alert_body("log-3"), expired).status_code == 401
            assert rx.post_alert(b"{", good).status_code == 400
            rx.wait_dispatched()
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    events = {line.get("event") for line in lines}
    assert {"alert_accepted", "auth_refused"} <= events
    for token in (good, wrong_audience, expired):
        assert token not in text
        for part in token.split("."):
            assert part not in text  # not even the header, claims or signature on their own
    assert "Bearer ey" not in text
    accepted = next(line for line in lines if line.get("event") == "alert_accepted")
    assert accepted["alert_id"].endswith("/test-log-1") and accepted["condition"] == "Fired"


def test_subprocess_logs_are_json_lines_without_tokens(tmp_path: Path, issuer: LocalIssuer) -> None:
    token = issuer.mint()
    rx = start_receiver(
        tmp_path, issuer, subprocess=True, backend="tests.support.backends:durable_fake", log_level="DEBUG"
    )
    try:
        assert rx.post_alert(alert_body("sub-log"), token).status_code == 202
        assert rx.post_alert(alert_body("sub-log-2"), token + "x").status_code == 401
    finally:
        assert rx.stop() == 0
    text = rx.stderr_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert any(line.get("event") == "alert_accepted" for line in lines)
    assert token not in text and token.split(".")[2] not in text


def test_formatter_scrubs_tokens_and_secret_fields() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "got Bearer abc.def.ghi and eyJhbGciOi.eyJzdWIi.c2ln", (), None
    )
    record.authorization = "Bearer secret-value"
    record.client_secret = "hunter2"
    record.note = "token eyJhbGciOiJSUzI1NiJ9.eyJhIjoxfQ.sig in text"
    line = json.loads(JsonFormatter().format(record))
    dumped = json.dumps(line)
    assert "abc.def.ghi" not in dumped and "eyJ" not in dumped
    assert "secret-value" not in dumped and "hunter2" not in dumped
    assert line["authorization"] == line["client_secret"] == "[redacted]"
    assert redact("Authorization: Bearer xyz") == "Authorization: Bearer [redacted]"
