"""``secure-export serve`` as a user runs it: a child process, configured by the environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from receiver.demo.local_issuer import LocalIssuer
from tests.support.alerts import alert_body
from tests.support.serve_log import ServeLog


def _env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_EXPORT_")}
    env.update(values)
    return env


def test_serve_without_configuration_names_the_missing_variables(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "secure_export.cli", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "SECURE_EXPORT_TENANT_ID" in result.stderr and "SECURE_EXPORT_AUDIENCES" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_serve_accepts_an_alert_and_work_items_lists_it(tmp_path: Path, issuer: LocalIssuer) -> None:
    db = tmp_path / "secure-export.db"
    env = _env(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES=",".join(issuer.audiences),
        SECURE_EXPORT_JWKS_URI=issuer.jwks_uri,
        SECURE_EXPORT_DB=str(db),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "secure_export.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = ServeLog(process).url()  # logged after start-up, when /readyz can answer
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200

        for condition in ("Fired", "Resolved"):
            response = httpx.post(
                f"{url}/api/alerts",
                content=json.dumps(alert_body(1, condition)).encode(),
                headers={"Authorization": f"Bearer {issuer.mint()}", "Content-Type": "application/json"},
                timeout=10,
            )
            assert response.status_code == 202, response.text

        items: list[dict[str, object]] = []
        deadline = time.monotonic() + 20
        while not (items and items[0]["state"] == "Resolved"):
            assert time.monotonic() < deadline, f"work item not resolved: {items}"
            time.sleep(0.05)
            listing = subprocess.run(
                [sys.executable, "-m", "secure_export.cli", "work-items", "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                cwd=tmp_path,
            )
            assert listing.returncode == 0, listing.stderr
            items = json.loads(listing.stdout)
        assert items[0]["number"] == "INC0000001"
        assert items[0]["configuration_items"] == ["vm-app-01"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
    assert code == 0
