"""Backend outages and refusals: retry with backoff, exactly-once application, parking, metrics.

The receiver runs with the harness's fast retry policy (10 ms base, 200 ms cap) so an "outage"
of a few hundred milliseconds here exercises the same code path as a real outage of minutes
with the default policy (1 s base, 300 s cap).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from receiver.demo.local_issuer import LocalIssuer
from receiver.storage.sqlite.inbox import list_parked
from tests.support.alerts import alert_body
from tests.support.backends import RecordingBackend
from tests.support.receivers import start_receiver


def test_outage_then_recovery_applies_every_alert_exactly_once(tmp_path: Path, issuer: LocalIssuer) -> None:
    backend = RecordingBackend()
    backend.outage()
    with start_receiver(tmp_path, issuer, backend=backend, dispatch_max_attempts=1000) as rx:
        token = issuer.mint()
        accepted = []
        for n in range(30):
            condition = "Fired" if n % 3 else "Resolved"
            body = alert_body(f"outage-{n // 2}", condition)
            response = rx.post_alert(body, token)
            # The receiver keeps answering 202 while the ITSM tool is down.
            assert response.status_code == 202
            if not response.json()["duplicate"]:
                accepted.append((body["data"]["essentials"]["alertId"], condition))
        rx.wait_until(lambda: len(backend.calls) > 3 * len(set(accepted)) // 2, 20, "retries during the outage")
        assert backend.applied == []
        assert rx.inbox_counts()["pending"] == len(accepted)
        assert rx.metric("secure_export_inbox_depth") == len(accepted)
        backend.recover()
        rx.wait_dispatched()
        assert sorted(backend.applied) == sorted(accepted)
        assert not backend.overlapping_key  # events of one alert never ran concurrently
        # Successful applications: exactly one per accepted delivery.
        assert rx.metric("secure_export_backend_calls_total", outcome="ok") == len(accepted)
        assert rx.metric("secure_export_backend_calls_total", outcome="transient") >= len(accepted)
        assert rx.metric("secure_export_backend_errors_total", kind="TransientBackendError") >= len(accepted)
        assert list_parked(rx.db_path) == []


def test_permanent_error_parks_at_once_and_is_visible(tmp_path: Path, issuer: LocalIssuer) -> None:
    backend = RecordingBackend()
    refused = alert_body("refused")
    refused_id = refused["data"]["essentials"]["alertId"]
    backend.permanent_for.add(refused_id)
    with start_receiver(tmp_path, issuer, backend=backend) as rx:
        assert rx.post_alert(refused, issuer.mint()).status_code == 202
        assert rx.post_alert(alert_body("fine"), issuer.mint()).status_code == 202
        rx.wait_dispatched()
        assert backend.calls.count((refused_id, "Fired")) == 1  # no retry for a permanent refusal
        parked = list_parked(rx.db_path)
        assert [(p["alert_id"], p["monitor_condition"], p["attempts"]) for p in parked] == [(refused_id, "Fired", 1)]
        assert "refused by the fake ITSM tool" in parked[0]["last_error"]
        assert rx.inbox_counts() == {"pending": 0, "done": 1, "parked": 1}
        assert rx.metric("secure_export_inbox_parked") == 1
        assert rx.metric("secure_export_dispatch_parked_total", reason="permanent") == 1
        assert rx.metric("secure_export_backend_calls_total", outcome="permanent") == 1
        # A repeat of a parked delivery changes nothing either: it stays visible, not retried.
        again = rx.post_alert(refused, issuer.mint())
        assert again.status_code == 202 and again.json()["duplicate"] is True
        assert len(list_parked(rx.db_path)) == 1


def test_too_many_transient_failures_park_the_row_and_later_events_proceed(tmp_path: Path, issuer: LocalIssuer) -> None:
    backend = RecordingBackend()
    backend.outage()
    with start_receiver(tmp_path, issuer, backend=backend, dispatch_max_attempts=3) as rx:
        fired = alert_body("flaky")
        alert_id = fired["data"]["essentials"]["alertId"]
        assert rx.post_alert(fired, issuer.mint()).status_code == 202
        rx.wait_until(lambda: rx.inbox_counts()["parked"] == 1, 10, "the row to be parked")
        assert backend.calls.count((alert_id, "Fired")) == 3
        parked = list_parked(rx.db_path)
        assert parked[0]["attempts"] == 3 and "gave up after 3 attempts" in parked[0]["last_error"]
        assert rx.metric("secure_export_dispatch_parked_total", reason="max_attempts") == 1
        backend.recover()
        assert rx.post_alert(alert_body("flaky", "Resolved"), issuer.mint()).status_code == 202
        rx.wait_dispatched()
        assert backend.applied == [(alert_id, "Resolved")]


def test_retry_after_is_honoured(tmp_path: Path, issuer: LocalIssuer) -> None:
    backend = RecordingBackend()
    backend.retry_after = 0.4
    backend.fail_transient(1)
    # Backoff alone would retry within ~10 ms; the backend's Retry-After (under the cap) wins.
    with start_receiver(tmp_path, issuer, backend=backend, dispatch_backoff_cap_seconds=5) as rx:
        started = time.monotonic()
        assert rx.post_alert(alert_body("retry-after"), issuer.mint()).status_code == 202
        rx.wait_until(lambda: len(backend.applied) == 1, 10, "the retry")
        assert len(backend.calls) == 2
        assert time.monotonic() - started >= 0.4


def test_unexpected_exception_is_retried_not_dropped(tmp_path: Path, issuer: LocalIssuer) -> None:
    class Buggy(RecordingBackend):
        bugs = 2

        async def apply(self, event):
            if self.bugs:
                self.bugs -= 1
                raise KeyError("a bug in the backend")
            await super().apply(event)

    backend = Buggy()
    with start_receiver(tmp_path, issuer, backend=backend) as rx:
        assert rx.post_alert(alert_body("bug"), issuer.mint()).status_code == 202
        rx.wait_dispatched()
        assert len(backend.applied) == 1
        assert rx.metric("secure_export_backend_errors_total", kind="KeyError") == 2


def test_pending_rows_are_applied_after_restart(tmp_path: Path, issuer: LocalIssuer) -> None:
    db = str(tmp_path / "restart.db")
    down = RecordingBackend()
    down.outage()
    with start_receiver(tmp_path, issuer, backend=down, db=db, dispatch_max_attempts=1000) as rx:
        for n in range(5):
            assert rx.post_alert(alert_body(f"restart-{n}"), issuer.mint()).status_code == 202
        rx.wait_until(lambda: len(down.calls) >= 5, 10, "first attempts")
    assert down.applied == []
    up = RecordingBackend()
    with start_receiver(tmp_path, issuer, backend=up, db=db) as rx:
        rx.wait_dispatched()
        assert Counter(alert for alert, _ in up.applied) == Counter(
            alert_body(f"restart-{n}")["data"]["essentials"]["alertId"] for n in range(5)
        )
