"""SECURE_EXPORT_BMC_* validation: checked at start with the other settings, each variable named, no secret shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.http.backends import create_backend
from receiver.itsm.bmc_helix.backend import BmcHelixBackend
from receiver.itsm.bmc_helix.settings import BmcSettings, BmcSettingsError
from receiver.settings import SettingsError, load_settings

SECRET = "pa55-secret"
BASE = {
    "SECURE_EXPORT_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "SECURE_EXPORT_AUDIENCES": "api://x",
    "SECURE_EXPORT_ITSM": "bmc-helix",
    "SECURE_EXPORT_BMC_URL": "https://acme-restapi.onbmc.com/",
    "SECURE_EXPORT_BMC_USERNAME": "svc",
    "SECURE_EXPORT_BMC_PASSWORD": SECRET,
}


def test_valid_settings_build_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (BASE | {"SECURE_EXPORT_BMC_SEVERITY_MAP": '{"Sev2": {"impact": 1, "urgency": 4}}'}).items():
        monkeypatch.setenv(name, value)
    settings = load_settings(with_backend=True)
    assert settings.itsm == "bmc-helix"
    backend = create_backend(settings)
    assert isinstance(backend, BmcHelixBackend)
    assert backend.settings.url == "https://acme-restapi.onbmc.com"
    assert backend.settings.levels("Sev2") == ("1-Extensive/Widespread", "4-Low")
    assert backend.settings.levels(None) == ("4-Minor/Localized", "3-Medium")  # unknown severity: Sev3
    assert SECRET not in repr(backend.settings)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"SECURE_EXPORT_BMC_URL": None}, "SECURE_EXPORT_BMC_URL: is required with SECURE_EXPORT_ITSM=bmc-helix"),
        ({"SECURE_EXPORT_BMC_USERNAME": None}, "SECURE_EXPORT_BMC_USERNAME: is required"),
        ({"SECURE_EXPORT_BMC_PASSWORD": None}, "SECURE_EXPORT_BMC_PASSWORD: is required"),
        ({"SECURE_EXPORT_BMC_URL": "http://acme-restapi.onbmc.com"}, "SECURE_EXPORT_BMC_URL: must use https"),
        (
            {"SECURE_EXPORT_BMC_URL": "https://acme-restapi.onbmc.com/api/arsys"},
            "SECURE_EXPORT_BMC_URL: must be the REST API base URL",
        ),
        (
            {"SECURE_EXPORT_BMC_RESOLVED_STATUS_REASON": "Fixed"},
            "SECURE_EXPORT_BMC_RESOLVED_STATUS_REASON: must be one of",
        ),
        ({"SECURE_EXPORT_BMC_CORRELATION_FIELD": "x' OR 'a"}, "SECURE_EXPORT_BMC_CORRELATION_FIELD"),
        ({"SECURE_EXPORT_BMC_SEVERITY_MAP": '{"Sev1": {"impact": 5, "urgency": 1}}'}, "SECURE_EXPORT_BMC_SEVERITY_MAP"),
        ({"SECURE_EXPORT_BMC_SERVICE_TYPE": "Incident"}, "SECURE_EXPORT_BMC_SERVICE_TYPE"),
    ],
)
def test_bad_settings_name_the_variable_with_the_others(changes: dict[str, str | None], named: str) -> None:
    environ = {k: v for k, v in (BASE | changes).items() if v is not None} | {"SECURE_EXPORT_AUDIENCES": ""}
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert named in message and "SECURE_EXPORT_AUDIENCES" in message  # one report with every problem
    assert SECRET not in message


def test_bmc_variables_are_not_required_for_other_backends() -> None:
    environ = {k: v for k, v in BASE.items() if not k.startswith("SECURE_EXPORT_BMC_")}
    assert load_settings(environ | {"SECURE_EXPORT_ITSM": "embedded"}).itsm == "embedded"
    with pytest.raises(BmcSettingsError, match="SECURE_EXPORT_BMC_URL"):
        BmcSettings.load({})


def test_plain_http_is_allowed_only_on_loopback() -> None:
    assert BmcSettings.load({}, url="http://127.0.0.1:8443", username="u", password="p").url == "http://127.0.0.1:8443"


def test_serve_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_EXPORT_")}
    env |= BASE | {"SECURE_EXPORT_DB": str(tmp_path / "x.db"), "SECURE_EXPORT_BMC_URL": "http://bmc.example.com"}
    done = subprocess.run(
        [sys.executable, "-m", "secure_export.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "SECURE_EXPORT_BMC_URL: must use https" in done.stderr
    assert SECRET not in done.stderr and "Traceback" not in done.stderr


def test_a_misspelt_bmc_variable_gets_a_suggestion() -> None:
    from receiver.settings import unknown_variables

    lines = unknown_variables(BASE | {"SECURE_EXPORT_BMC_ASSIGNED_GRUOP": "Cloud Operations"})
    assert lines == [
        "SECURE_EXPORT_BMC_ASSIGNED_GRUOP: unknown variable, ignored; did you mean SECURE_EXPORT_BMC_ASSIGNED_GROUP?"
    ]
