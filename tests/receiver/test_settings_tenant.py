"""``SECURE_EXPORT_TENANT_ID`` must be the tenant GUID that Azure AD writes into ``tid`` and ``iss``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.auth.tokens import AuthPolicy
from receiver.settings import SettingsError, load_settings

GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _env(tenant: str) -> dict[str, str]:
    return {"SECURE_EXPORT_TENANT_ID": tenant, "SECURE_EXPORT_AUDIENCES": "api://secure-export"}


@pytest.mark.parametrize(
    "tenant",
    [
        "contoso.onmicrosoft.com",
        "contoso.com",
        "common",
        "organizations",
        GUID.replace("-", ""),
        "{" + GUID + "}",
        GUID + "x",
        GUID[:-1],
    ],
)
def test_anything_but_a_guid_is_refused_with_a_pointer_to_the_directory_id(tenant: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(_env(tenant))
    message = str(raised.value)
    assert "SECURE_EXPORT_TENANT_ID" in message
    assert "Directory (tenant) ID" in message and "not a domain name" in message


def test_guid_is_normalised_to_the_lower_case_azure_ad_puts_in_tokens() -> None:
    settings = load_settings(_env(f"  {GUID.upper()} "))
    assert settings.tenant_id == GUID
    assert settings.jwks_uri == f"https://login.microsoftonline.com/{GUID}/discovery/v2.0/keys"
    # The issuers the verifier compares byte for byte are built from the normalised id.
    policy = AuthPolicy(
        tenant_id=settings.tenant_id,
        audiences=settings.audiences,
        allowed_callers=settings.allowed_callers,
        required_role=settings.required_role,
    )
    assert policy.v1_issuer == f"https://sts.windows.net/{GUID}/"
    assert policy.v2_issuer == f"https://login.microsoftonline.com/{GUID}/v2.0"


def test_serve_with_a_domain_name_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_EXPORT_")}
    env |= _env("contoso.onmicrosoft.com") | {"SECURE_EXPORT_DB": str(tmp_path / "r.db")}
    result = subprocess.run(
        [sys.executable, "-m", "secure_export.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "SECURE_EXPORT_TENANT_ID" in result.stderr and "Directory (tenant) ID" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r.db").exists()
