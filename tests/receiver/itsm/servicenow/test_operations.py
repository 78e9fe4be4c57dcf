"""Day-two operations against a real ``secure-export serve`` with ServiceNow as backend.

A data policy of the (local) ServiceNow refuses the incident, the delivery is parked; the operator
fixes the policy and replays it with the CLI while the receiver runs; ``trace`` then names the
incident with its link. The ops port carries ``/metrics`` and the ops endpoints; the public port
does not.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.demo.local_issuer import LocalIssuer
from tests.receiver.itsm.servicenow.helpers import PASSWORD, USER
from tests.support.alerts import alert_body
from tests.support.itsm_fakes.servicenow import FakeServiceNow
from tests.support.paths import REPO_ROOT
from tests.support.serve_log import ServeLog

REPO = REPO_ROOT


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as local_issuer:
        yield local_issuer


def _free_port() -> int:
    """For SECURE_EXPORT_OPS_PORT only, which takes 1..65535 (the main port is bound as port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secure_export.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )


def _wait(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _trace(env: dict[str, str], alert_id: str) -> dict[str, Any]:
    result = _cli(env, "trace", alert_id, "--json")
    assert result.returncode in (0, 1), result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_a_parked_delivery_is_replayed_by_the_cli_while_serve_runs_and_trace_names_the_incident(
    tmp_path: Path, issuer: LocalIssuer, fake: FakeServiceNow
) -> None:
    fake.mandatory_on_insert = {"assignment_group"}
    ops_port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_EXPORT_")}
    env.update(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES=issuer.audience,
        SECURE_EXPORT_JWKS_URI=issuer.jwks_uri,
        SECURE_EXPORT_DB=str(tmp_path / "secure-export.db"),
        SECURE_EXPORT_ITSM="servicenow",
        SECURE_EXPORT_SERVICENOW_URL=fake.url,
        SECURE_EXPORT_SERVICENOW_USERNAME=USER,
        SECURE_EXPORT_SERVICENOW_PASSWORD=PASSWORD,
        SECURE_EXPORT_SERVICENOW_READINESS_CACHE_SECONDS="0",
        SECURE_EXPORT_OPS_PORT=str(ops_port),
        SECURE_EXPORT_OPS_POLL_SECONDS="0.2",
        SECURE_EXPORT_DISPATCH_BACKOFF_BASE_SECONDS="0.01",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "secure_export.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log = ServeLog(process)
    try:
        url, ops = log.url("listening"), log.url("ops_listening")
        assert ops == f"http://127.0.0.1:{ops_port}"

        def ready() -> bool:
            assert process.poll() is None, log.text()
            try:
                return httpx.get(f"{ops}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        _wait("readiness on the ops port", ready, 30)
        body = alert_body(7)
        alert_id = body["data"]["essentials"]["alertId"]
        answer = httpx.post(
            f"{url}/api/alerts",
            content=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {issuer.mint()}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 202, answer.text

        # The public port: alerts, liveness and a status-only readiness; nothing else.
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 404
        assert httpx.get(f"{url}/ops/trace/x", timeout=5).status_code == 404
        assert httpx.get(f"{url}/readyz", timeout=5).json() == {"status": "ready"}
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert "secure_export_" in httpx.get(f"{ops}/metrics", timeout=5).text

        parked = _wait(
            "the refused delivery to be parked",
            lambda: [d for d in _trace(env, alert_id)["deliveries"] if d["state"] == "parked"],
        )
        assert "Data Policy Exception" in parked[0]["last_error"]
        row_id = parked[0]["id"]
        remote = httpx.get(f"{ops}/ops/trace/{alert_id}", timeout=5).json()
        assert remote["deliveries"][0]["state"] == "parked" and remote["work_items"] == []

        fake.mandatory_on_insert = set()  # the ServiceNow admin relaxed the policy
        replayed = _cli(env, "replay", "--id", str(row_id), "--by", "on-call")
        assert replayed.returncode == 0, replayed.stderr
        assert f"Replayed 1 delivery: {row_id}" in replayed.stdout

        done = _wait(
            "the replayed delivery to be applied",
            lambda: (t := _trace(env, alert_id))["work_items"] and t,
        )
        [incident] = fake.rows("incident")
        assert done["work_items"] == [
            {"number": incident["number"], "url": f"{fake.url}/nav_to.do?uri=incident.do?sys_id={incident['sys_id']}"}
        ]
        [delivery] = done["deliveries"]
        assert set(delivery) == {"id", "condition", "state", "attempts", "last_error", "received_at"}
        assert (delivery["id"], delivery["condition"], delivery["state"]) == (row_id, "Fired", "done")
        from receiver.storage.operations import trace

        [detail] = trace(env["SECURE_EXPORT_DB"], alert_id, details=True)["deliveries"]
        assert (detail["replays"], detail["replayed_by"]) == (1, "on-call")

        human = _cli(env, "trace", alert_id)
        assert human.returncode == 0 and incident["number"] in human.stdout and "done" in human.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
    assert code == 0
    assert PASSWORD not in (process.stderr.read().decode() if process.stderr else "")
