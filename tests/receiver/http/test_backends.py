"""``create_backend`` builds the selected backend from the settings validated at start, never from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from receiver.http.backends import create_backend
from receiver.itsm.bmc_helix.backend import BmcHelixBackend
from receiver.itsm.servicenow.backend import ServiceNowBackend
from receiver.settings import load_settings

RECEIVER = {
    "SECURE_EXPORT_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "SECURE_EXPORT_AUDIENCES": "api://x",
    "SECURE_EXPORT_REOPEN_WINDOW": "PT10M",
}
SERVICENOW = {
    "SECURE_EXPORT_ITSM": "servicenow",
    "SECURE_EXPORT_SERVICENOW_URL": "https://acme.service-now.com",
    "SECURE_EXPORT_SERVICENOW_USERNAME": "svc",
    "SECURE_EXPORT_SERVICENOW_PASSWORD": "pa55-secret",
}
BMC = {
    "SECURE_EXPORT_ITSM": "bmc-helix",
    "SECURE_EXPORT_BMC_URL": "https://acme-restapi.onbmc.com",
    "SECURE_EXPORT_BMC_USERNAME": "svc",
    "SECURE_EXPORT_BMC_PASSWORD": "pa55-secret",
}


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """No ``SECURE_EXPORT_*`` in the process environment; the receiver's variables as a mapping instead."""
    for name in [name for name in os.environ if name.upper().startswith("SECURE_EXPORT_")]:
        monkeypatch.delenv(name)
    return RECEIVER | {"SECURE_EXPORT_DB": str(tmp_path / "receiver.db")}


def test_servicenow_is_built_from_the_validated_settings_not_the_environment(bare_environment: dict[str, str]) -> None:
    settings = load_settings(bare_environment | SERVICENOW, with_backend=True)
    assert settings.servicenow is not None and settings.bmc is None
    backend = create_backend(settings)
    assert isinstance(backend, ServiceNowBackend)
    assert backend.settings is settings.servicenow  # the object validated at start, not a second reading
    assert backend.settings.url == "https://acme.service-now.com"
    assert backend.reopen_window == 600.0  # SECURE_EXPORT_REOPEN_WINDOW reaches the backend


def test_bmc_helix_is_built_from_the_validated_settings_not_the_environment(bare_environment: dict[str, str]) -> None:
    settings = load_settings(bare_environment | BMC, with_backend=True)
    assert settings.bmc is not None and settings.servicenow is None
    backend = create_backend(settings)
    assert isinstance(backend, BmcHelixBackend)
    assert backend.settings is settings.bmc
    assert backend.settings.url == "https://acme-restapi.onbmc.com"


def test_only_the_selected_backend_s_settings_are_carried(bare_environment: dict[str, str]) -> None:
    both = bare_environment | SERVICENOW | {k: v for k, v in BMC.items() if k != "SECURE_EXPORT_ITSM"}
    embedded = load_settings(both | {"SECURE_EXPORT_ITSM": "embedded"}, with_backend=True)
    assert (embedded.servicenow, embedded.bmc) == (None, None)
    servicenow = load_settings(both, with_backend=True)
    assert servicenow.servicenow is not None and servicenow.bmc is None


def test_settings_loaded_without_the_backend_s_are_refused_naming_the_fix(bare_environment: dict[str, str]) -> None:
    settings = load_settings(bare_environment | SERVICENOW)  # the receiver's own variables only
    assert settings.servicenow is None
    with pytest.raises(ValueError, match=r"SECURE_EXPORT_ITSM=servicenow: .*with_backend=True"):
        create_backend(settings)
