"""Configuration of the served receiver: ``SECURE_EXPORT_*`` validated once, clear errors, exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.settings import AZNS_WEBHOOK_APP_ID, ReceiverSettings, SettingsError, load_settings
from tests.support.paths import REPO_ROOT

TENANT = "5e1f0c2a-7d3b-4a6e-9c8f-0b1d2e3f4a5b"


def _env(**values: str) -> dict[str, str]:
    return {f"SECURE_EXPORT_{key.upper()}": value for key, value in values.items()}


def test_defaults_follow_the_design() -> None:
    settings = load_settings(_env(tenant_id=TENANT, audiences="api://secure-export"))
    assert isinstance(settings, ReceiverSettings)
    assert settings.audiences == frozenset({"api://secure-export"})
    assert settings.allowed_callers == frozenset({AZNS_WEBHOOK_APP_ID})
    assert settings.allowed_subscriptions is None
    assert settings.required_role == "ActionGroupsSecureWebhook"
    assert settings.jwks_uri == f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys"
    assert settings.db == "./secure-export.db"
    assert settings.itsm == "embedded" and settings.correlation == "alert"
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.priority_map == {"Sev0": 1, "Sev1": 2, "Sev2": 3, "Sev3": 4, "Sev4": 5}


def test_comma_lists_and_maps_are_split() -> None:
    settings = load_settings(
        _env(
            tenant_id=TENANT,
            audiences=" api://a , 0f6c9a1e-2b4d-4e8f-a3c5-7d9e1b2c4f60,",
            allowed_callers="c1,c2",
            allowed_subscriptions="AAAA0A0A-BB1B-CC2C-DD3D-EEEEEE4E4E4E, 11111111-2222-3333-4444-555555555555",
            priority_map="sev0=1, Sev4=3",
            itsm="ServiceNow",
            correlation="rule-target",
            max_body_bytes="2048",
        )
    )
    assert settings.audiences == frozenset({"api://a", "0f6c9a1e-2b4d-4e8f-a3c5-7d9e1b2c4f60"})
    assert settings.allowed_callers == frozenset({"c1", "c2"})
    assert settings.allowed_subscriptions == frozenset(
        {"aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e", "11111111-2222-3333-4444-555555555555"}
    )
    assert settings.priority_map["Sev4"] == 3 and settings.priority_map["Sev2"] == 3
    assert settings.itsm == "servicenow" and settings.correlation == "rule-target"
    assert settings.max_body_bytes == 2048


def test_every_bad_variable_is_named_on_its_own_line() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            _env(
                audiences=" , ",
                itsm="jira",
                correlation="rule",
                max_body_bytes="lots",
                priority_map="Sev7=1",
                dispatch_max_attempts="0",
            )
        )
    lines = str(caught.value).splitlines()
    named = {line.split(":", 1)[0] for line in lines[1:]}
    assert named == {
        "SECURE_EXPORT_TENANT_ID",
        "SECURE_EXPORT_AUDIENCES",
        "SECURE_EXPORT_ITSM",
        "SECURE_EXPORT_CORRELATION",
        "SECURE_EXPORT_MAX_BODY_BYTES",
        "SECURE_EXPORT_PRIORITY_MAP",
        "SECURE_EXPORT_DISPATCH_MAX_ATTEMPTS",
    }
    assert "SECURE_EXPORT_TENANT_ID: is required but not set" in lines


def test_plain_http_jwks_is_refused_except_on_loopback() -> None:
    with pytest.raises(SettingsError, match="SECURE_EXPORT_JWKS_URI: .*https"):
        load_settings(_env(tenant_id=TENANT, audiences="a", jwks_uri="http://keys.example.com/keys"))
    local = load_settings(_env(tenant_id=TENANT, audiences="a", jwks_uri="http://127.0.0.1:8081/keys"))
    assert local.jwks_uri == "http://127.0.0.1:8081/keys"


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_EXPORT_")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "receiver.http.server", *args],
        env=clean,
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_with_bad_config_exits_2_without_traceback() -> None:
    result = _serve(_env(max_body_bytes="huge"))
    assert result.returncode == 2
    assert "SECURE_EXPORT_TENANT_ID" in result.stderr and "SECURE_EXPORT_AUDIENCES" in result.stderr
    assert "SECURE_EXPORT_MAX_BODY_BYTES" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_taken_port_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = _serve(
            _env(tenant_id=TENANT, audiences="a", db=str(tmp_path / "p.db")), "--host", "127.0.0.1", "--port", str(port)
        )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "Traceback" not in result.stderr


def test_backend_refusing_its_configuration_stops_the_start(tmp_path: Path) -> None:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_EXPORT_")}
    clean.update(_env(tenant_id=TENANT, audiences="a", db=str(tmp_path / "r.db"), jwks_uri="http://127.0.0.1:9/keys"))
    clean["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.receivers", "--backend", "tests.support.backends:refusing_backend"],
        env=clean,
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "LISTENING" not in result.stdout
    # One line says why; no traceback and no "Task exception was never retrieved" after it.
    errors = [line for line in result.stderr.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1 and "not a valid choice" in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "never retrieved" not in result.stderr
