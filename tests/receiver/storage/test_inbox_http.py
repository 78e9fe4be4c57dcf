"""``503`` over HTTP when the inbox cannot be written, and recovery once it can."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from receiver.demo.local_issuer import LocalIssuer
from tests.support.alerts import alert_body
from tests.support.backends import RecordingBackend
from tests.support.receivers import start_receiver


def test_locked_inbox_answers_503_with_retry_after_then_recovers(tmp_path: Path, issuer: LocalIssuer) -> None:
    with start_receiver(tmp_path, issuer, backend=RecordingBackend(), inbox_busy_timeout_seconds=0.2) as rx:
        assert rx.post_alert(alert_body("before"), issuer.mint()).status_code == 202
        blocker = sqlite3.connect(rx.db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock beyond the busy timeout
        try:
            response = rx.post_alert(alert_body("during"), issuer.mint())
            assert response.status_code == 503
            assert response.json()["error"] == "inbox_unavailable"
            assert response.headers["retry-after"].isdigit()
            ready = rx.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"] == "not_ready" and "inbox" in ready.json()["detail"]
            assert rx.get("/healthz").status_code == 200
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # Azure retries the 503: the same delivery is now stored, once.
        retried = rx.post_alert(alert_body("during"), issuer.mint())
        assert retried.status_code == 202 and retried.json()["duplicate"] is False
        assert rx.get("/readyz").status_code == 200
        assert rx.metric("secure_export_http_requests_total", route="/api/alerts", status="503") == 1
        assert rx.metric("secure_export_inbox_write_failures_total") >= 1


@pytest.mark.anyio
async def test_concurrent_requests_share_commits(tmp_path: Path, issuer: LocalIssuer) -> None:
    class Unreachable(RecordingBackend):
        async def start(self) -> None:
            raise ConnectionError("ITSM tool unreachable")  # nothing is dispatched: only puts commit

    with start_receiver(tmp_path, issuer, backend=Unreachable()) as rx:
        token = issuer.mint()

        async with httpx.AsyncClient(base_url=rx.url, limits=httpx.Limits(max_connections=50), timeout=30) as client:
            headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
            responses = await asyncio.gather(
                *(
                    client.post("/api/alerts", content=json.dumps(alert_body(f"group-{n}")), headers=headers)
                    for n in range(200)
                )
            )
        assert [response.status_code for response in responses] == [202] * 200
        rows = rx.metric("secure_export_inbox_rows_written_total")
        commits = rx.metric("secure_export_inbox_commits_total")
        assert rows == 200
        # Group commit: 200 concurrent deliveries needed fewer than 200 transactions (fsyncs).
        assert commits < 200
        assert rx.metric("secure_export_inbox_depth") == 200
