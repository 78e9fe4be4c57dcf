"""SECURE_EXPORT_SERVICENOW_* validation: clear errors naming the variable, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.itsm.servicenow.backend import ServiceNowBackend
from receiver.itsm.servicenow.settings import AuthMode, ServiceNowSettings, ServiceNowSettingsError, Target

BASE = {
    "SECURE_EXPORT_SERVICENOW_URL": "https://acme.service-now.com/",
    "SECURE_EXPORT_SERVICENOW_USERNAME": "svc",
    "SECURE_EXPORT_SERVICENOW_PASSWORD": "pa55-secret",
}

RECEIVER = {
    "SECURE_EXPORT_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "SECURE_EXPORT_AUDIENCES": "api://x",
    "SECURE_EXPORT_ITSM": "servicenow",
}


def _env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_the_receiver_settings_carry_the_variables_to_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from receiver.http.backends import create_backend
    from receiver.settings import load_settings

    _env(
        monkeypatch,
        RECEIVER
        | BASE
        | {
            "SECURE_EXPORT_SERVICENOW_TARGET": "event",
            "SECURE_EXPORT_SERVICENOW_SEVERITY_MAP": '{"Sev2": {"impact": 1, "urgency": 3}}',
            "SECURE_EXPORT_SERVICENOW_CREATE_CIS": "true",
        },
    )
    backend = create_backend(load_settings(with_backend=True))
    assert isinstance(backend, ServiceNowBackend)
    s = backend.settings
    assert s.url == "https://acme.service-now.com" and s.target is Target.EVENT and s.create_cis
    assert s.effective_auth is AuthMode.BASIC
    assert (s.impact_urgency("Sev2").impact, s.impact_urgency("Sev2").urgency) == (1, 3)
    assert s.impact_urgency("Sev0").impact == 1  # untouched severities keep the default


def test_secrets_never_appear_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(
        monkeypatch,
        BASE | {"SECURE_EXPORT_SERVICENOW_CLIENT_ID": "cid", "SECURE_EXPORT_SERVICENOW_CLIENT_SECRET": "client-s3cret"},
    )
    s = ServiceNowSettings.load()
    assert "pa55-secret" not in repr(s) and "client-s3cret" not in repr(s)
    assert s.effective_auth is AuthMode.OAUTH_PASSWORD


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"SECURE_EXPORT_SERVICENOW_URL": None}, "SECURE_EXPORT_SERVICENOW_URL: is required"),
        (
            {"SECURE_EXPORT_SERVICENOW_URL": "http://acme.service-now.com"},
            "SECURE_EXPORT_SERVICENOW_URL: must use https",
        ),
        ({"SECURE_EXPORT_SERVICENOW_TARGET": "alert"}, "SECURE_EXPORT_SERVICENOW_TARGET"),
        (
            {"SECURE_EXPORT_SERVICENOW_CI_LOOKUP_FIELD": "object_id^ORname!=x"},
            "SECURE_EXPORT_SERVICENOW_CI_LOOKUP_FIELD",
        ),
        ({"SECURE_EXPORT_SERVICENOW_CI_LOOKUP_FIELD": "object_id\n"}, "SECURE_EXPORT_SERVICENOW_CI_LOOKUP_FIELD"),
        (
            {"SECURE_EXPORT_SERVICENOW_SEVERITY_MAP": '{"Sev9": {"impact": 1, "urgency": 1}}'},
            "SECURE_EXPORT_SERVICENOW_SEVERITY_MAP",
        ),
        (
            {"SECURE_EXPORT_SERVICENOW_SEVERITY_MAP": '{"Sev1": {"impact": 4, "urgency": 1}}'},
            "SECURE_EXPORT_SERVICENOW_SEVERITY_MAP",
        ),
        (
            {"SECURE_EXPORT_SERVICENOW_ASSIGNMENT_GROUP": "Service Desk"},
            "SECURE_EXPORT_SERVICENOW_ASSIGNMENT_GROUP: must be a 32-character hex sys_id",
        ),
        ({"SECURE_EXPORT_SERVICENOW_TIMEOUT_SECONDS": "0"}, "SECURE_EXPORT_SERVICENOW_TIMEOUT_SECONDS"),
        ({"SECURE_EXPORT_SERVICENOW_PASSWORD": None}, "no credentials"),
        ({"SECURE_EXPORT_SERVICENOW_AUTH": "oauth-client-credentials"}, "SECURE_EXPORT_SERVICENOW_CLIENT_ID"),
    ],
)
def test_invalid_configuration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], named: str
) -> None:
    values = dict(BASE)
    for name, value in changes.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    _env(monkeypatch, values)
    with pytest.raises(ServiceNowSettingsError) as caught:
        ServiceNowSettings.load()
    assert named in str(caught.value)
    assert "pa55-secret" not in str(caught.value)


def test_plain_http_is_allowed_only_on_loopback() -> None:
    s = ServiceNowSettings.load(url="http://127.0.0.1:8443", username="u", password="p")
    assert s.url == "http://127.0.0.1:8443"


def test_serve_refuses_a_bad_servicenow_configuration_naming_the_variable(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_EXPORT_")}
    env |= {
        "SECURE_EXPORT_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "SECURE_EXPORT_AUDIENCES": "api://x",
        "SECURE_EXPORT_DB": str(tmp_path / "x.db"),
        "SECURE_EXPORT_ITSM": "servicenow",
        "SECURE_EXPORT_SERVICENOW_URL": "https://acme.service-now.com",
        "SECURE_EXPORT_SERVICENOW_USERNAME": "svc",
        "SECURE_EXPORT_SERVICENOW_PASSWORD": "pa55-secret",
        "SECURE_EXPORT_SERVICENOW_TARGET": "alerts",
    }
    done = subprocess.run(
        [sys.executable, "-m", "secure_export.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "SECURE_EXPORT_SERVICENOW_TARGET" in done.stderr and "pa55-secret" not in done.stderr
    assert "Traceback" not in done.stderr


def test_one_error_lists_the_bad_receiver_variable_and_the_bad_servicenow_variable(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from receiver.settings import SettingsError, load_settings

    bad = (
        RECEIVER | BASE | {"SECURE_EXPORT_DISPATCH_MAX_ATTEMPTS": "0", "SECURE_EXPORT_SERVICENOW_TIMEOUT_SECONDS": "0"}
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(bad, with_backend=True)
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid receiver configuration:"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "SECURE_EXPORT_DISPATCH_MAX_ATTEMPTS",
        "SECURE_EXPORT_SERVICENOW_TIMEOUT_SECONDS",
    ]
    # The same single report from `serve`, which exits 2 before building the backend.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_EXPORT_")}
    env |= bad | {"SECURE_EXPORT_DB": str(tmp_path / "x.db")}
    done = subprocess.run(
        [sys.executable, "-m", "secure_export.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "SECURE_EXPORT_DISPATCH_MAX_ATTEMPTS" in done.stderr
    assert "SECURE_EXPORT_SERVICENOW_TIMEOUT_SECONDS" in done.stderr
    assert done.stderr.count("invalid receiver configuration") == 1
    assert "pa55-secret" not in done.stderr and "Traceback" not in done.stderr


def test_a_mapping_reads_json_variables_as_the_environment_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from receiver.settings import SettingsError, load_settings

    severity_map = {"SECURE_EXPORT_SERVICENOW_SEVERITY_MAP": '{"Sev2": {"impact": 1, "urgency": 3}}'}
    assert load_settings(RECEIVER | BASE | severity_map, with_backend=True).itsm == "servicenow"
    from_mapping = ServiceNowSettings.load(BASE | severity_map)
    _env(monkeypatch, BASE | severity_map)
    assert from_mapping == ServiceNowSettings.load()
    assert from_mapping.impact_urgency("Sev2").impact == 1
    broken = {"SECURE_EXPORT_SERVICENOW_SEVERITY_MAP": "{Sev2: high}"}
    with pytest.raises(SettingsError, match="SECURE_EXPORT_SERVICENOW_SEVERITY_MAP: must be JSON"):
        load_settings(RECEIVER | BASE | broken, with_backend=True)
    monkeypatch.setenv("SECURE_EXPORT_SERVICENOW_SEVERITY_MAP", "{Sev2: high}")
    with pytest.raises(ServiceNowSettingsError, match="SECURE_EXPORT_SERVICENOW_SEVERITY_MAP: must be JSON"):
        ServiceNowSettings.load()
