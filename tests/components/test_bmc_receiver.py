"""The receiver with the BMC Helix backend: config keys, the container's environment, the password as a secret."""

import json
from pathlib import Path

import pulumi
import pytest
import yaml

from secure_export.components import ReceiverService
from secure_export.plan.render import to_json
from secure_export.plan.run import plan_file
from secure_export.stack.config import ConfigError
from secure_export.stack.loading import load_stack_file
from tests.support.plans import CONTAINER_APP, declare, one

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "bmc-Passw0rd-for-test"
TENANT = "0b6f4c1e-3d2a-4f5b-8c9d-7e6f5a4b3c2d"
BASE = {
    "location": "westeurope",
    "resource_group_name": "rg-rx",
    "image_registry": "ghcr.io",
    "image_repository": "example/secure-export",
    "image_tag": "1.2.3",
    "tenant_id": TENANT,
    "audiences": ["api://rx"],
    "itsm": "bmc-helix",
    "bmc_url": "https://acme-restapi.onbmc.com",
    "bmc_username": "svc-azure-monitor",
}


def _env(app):
    (container,) = app.inputs["template"]["containers"]
    return {e["name"]: e for e in container["env"]}


def test_bmc_settings_reach_the_container_and_the_password_only_as_a_secret():
    result = declare(lambda: ReceiverService("rx", {**BASE, "bmc_password": pulumi.Output.secret(PASSWORD)}))
    app = one(result, CONTAINER_APP)
    env = _env(app)
    assert env["SECURE_EXPORT_ITSM"]["value"] == "bmc-helix"
    assert env["SECURE_EXPORT_BMC_URL"]["value"] == "https://acme-restapi.onbmc.com"
    assert env["SECURE_EXPORT_BMC_USERNAME"]["value"] == "svc-azure-monitor"
    assert env["SECURE_EXPORT_BMC_PASSWORD"] == {"name": "SECURE_EXPORT_BMC_PASSWORD", "secretRef": "bmc-password"}
    secrets = {s["name"]: s["value"] for s in app.inputs["configuration"]["secrets"]}
    assert secrets == {"bmc-password": PASSWORD}
    assert "configuration" in app.secret_inputs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bmc_url": "http://acme-restapi.onbmc.com"}, "bmc_url must be an https:// URL"),
        ({"bmc_password": None}, "needs bmc_username and bmc_password"),
    ],
)
def test_receiver_service_refuses_incomplete_bmc_settings(change, message):
    args = {**BASE, "bmc_password": PASSWORD, **change}
    with pytest.raises(ValueError, match=message):
        declare(lambda: ReceiverService("rx", args))


def _stack(tmp_path: Path, change) -> Path:
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    config = document["config"]
    config["secure-export:receiver"]["itsm"] = "bmc-helix"
    config["secure-export:bmcHelix"] = {"url": "https://acme-restapi.onbmc.com", "username": "svc-azure-monitor"}
    config["secure-export:bmcHelixPassword"] = {"secure": "v1:Y2lwaGVydGV4dA=="}
    change(config)
    path = tmp_path / "Pulumi.bmc.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_bmc_stack_plans_with_the_password_masked(tmp_path):
    plan = to_json(plan_file(_stack(tmp_path, lambda c: None), project_dir=REPO))
    [app] = [r for r in plan["resources"] if r["type"] == CONTAINER_APP]
    env = {e["name"]: e for e in app["inputs"]["template"]["containers"][0]["env"]}
    assert env["SECURE_EXPORT_BMC_URL"]["value"] == "https://acme-restapi.onbmc.com"
    assert env["SECURE_EXPORT_BMC_PASSWORD"]["secretRef"] == "bmc-password"
    assert "v1:Y2lwaGVydGV4dA==" not in json.dumps(plan)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda c: c.pop("secure-export:bmcHelixPassword"),
            "secure-export: receiver.itsm is bmc-helix: set secure-export:bmcHelix",
        ),
        (lambda c: c.pop("secure-export:bmcHelix"), "secure-export:bmcHelixPassword"),
        (
            lambda c: c.update({"secure-export:bmcHelixPassword": "plain"}),
            "secure-export:bmcHelixPassword: must be a Pulumi secret",
        ),
        (
            lambda c: c["secure-export:bmcHelix"].update(url="http://acme-restapi.onbmc.com"),
            "secure-export:bmcHelix.url",
        ),
        (
            lambda c: c["secure-export:bmcHelix"].pop("username"),
            "secure-export:bmcHelix.username: required value is missing",
        ),
    ],
)
def test_bmc_config_errors_name_the_keys(tmp_path, change, expected):
    with pytest.raises(ConfigError) as caught:
        load_stack_file(_stack(tmp_path, change), display="stacks/Pulumi.bmc.yaml")
    assert any(expected in p for p in caught.value.problems), caught.value.problems
