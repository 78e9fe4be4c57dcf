"""Direct mode (``secure-export:directEndpoint``): no receiver, the action group posts to the ITSM tool's endpoint."""

import subprocess
import sys
from pathlib import Path

import pulumi
import pytest
import yaml

from secure_export.components import SecureExport
from secure_export.plan.render import render_tree, to_json
from secure_export.plan.run import plan_stack
from secure_export.plan.tool_side import tool_side_lines
from secure_export.stack.config import ConfigError
from secure_export.stack.loading import load_stack_file
from tests.support.paths import REPO_ROOT
from tests.support.plans import (
    ACTION_GROUP,
    ACTIVITY_ALERT,
    APPLICATION,
    AZNS,
    LOG_ALERT,
    METRIC_ALERT,
    declare,
    log_rule,
    metric_rule,
    one,
)

REPO = REPO_ROOT
SECURE_EXPORT = Path(sys.executable).parent / "secure-export"
SN_URL = "https://contoso.service-now.com/api/sn_em_connector/em/inbound_event?source=azuremonitor"
BMC_URL = "https://contoso-restapi.onbmc.com/api/rx/application/webhook/azure-alerts"
RECEIVER_TYPES = (
    "secure-export:index:ReceiverService",
    "azure-native:app:ContainerApp",
    "azure-native:app:ManagedEnvironment",
    "azure-native:app:ManagedEnvironmentsStorage",
    "azure-native:operationalinsights:Workspace",
    "azure-native:storage:StorageAccount",
    "azure-native:storage:FileShare",
)


def _program(**overrides):
    args = {
        "location": "westeurope",
        "resource_group_name": "rg-itom",
        "action_group_short_name": "itom",
        "direct_endpoint": {"tool": "servicenow-em", "url": SN_URL},
        "access_token_version": 2,
        "metric_alerts": [metric_rule()],
        "log_alerts": [log_rule()],
        **overrides,
    }

    def program():
        export = SecureExport("sx", args)
        for name in (
            "receiver_url",
            "webhook_url",
            "tenant_id",
            "client_id",
            "identifier_uri",
            "access_token_version",
            "direct_endpoint_tool",
            "resource_group_name",
        ):
            pulumi.export(name, getattr(export, name))

    return program


def test_direct_mode_deploys_no_receiver_and_points_the_secure_webhook_at_the_tool():
    result = declare(_program())
    assert not [r.name for r in result.resources if r.type in RECEIVER_TYPES]
    app = one(result, APPLICATION)
    (webhook,) = one(result, ACTION_GROUP).inputs["webhookReceivers"]
    assert webhook["serviceUri"] == SN_URL == result.outputs["webhook_url"]
    assert webhook["useAadAuth"] is True and webhook["useCommonAlertSchema"] is True
    assert webhook["objectId"] == app.outputs["objectId"]
    assert webhook["identifierUri"] in app.inputs["identifierUris"]
    assert webhook["tenantId"] == result.outputs["tenant_id"]
    assert app.inputs["api"]["requestedAccessTokenVersion"] == 2
    assert result.outputs["access_token_version"] == 2
    assert result.outputs["direct_endpoint_tool"] == "servicenow-em"
    assert result.outputs["receiver_url"] is None


def test_direct_mode_wires_the_rules_and_creates_only_the_resource_group():
    result = declare(_program())
    group = one(result, ACTION_GROUP)
    assert one(result, METRIC_ALERT).inputs["actions"] == [{"actionGroupId": group.outputs["id"]}]
    assert one(result, LOG_ALERT).inputs["actions"] == {"actionGroups": [group.outputs["id"]]}
    rg = one(result, "azure-native:resources:ResourceGroup")
    assert rg.parent == "sx" and rg.inputs["resourceGroupName"] == "rg-itom"
    assert group.inputs["resourceGroupName"] == "rg-itom"
    existing = declare(_program(create_resource_group=False))
    assert not [r for r in existing.resources if r.type == "azure-native:resources:ResourceGroup"]


def test_receiver_and_direct_endpoint_together_or_neither_are_refused():
    receiver = {"image_registry": "ghcr.io", "image_repository": "x/y", "image_tag": "1"}
    with pytest.raises(Exception, match="exactly one of receiver or direct_endpoint"):
        declare(_program(receiver=receiver))
    with pytest.raises(Exception, match="exactly one of receiver or direct_endpoint"):
        declare(_program(direct_endpoint=None))
    with pytest.raises(Exception, match="service_uri must be an https:// URL"):
        declare(_program(direct_endpoint={"tool": "other", "url": "http://itsm.example.net/hook"}))


# -- stack config ----------------------------------------------------------------------------------


def _itom() -> dict:
    return yaml.safe_load((REPO / "stacks" / "Pulumi.itom.yaml").read_text())


def _problems(tmp_path: Path, change) -> list[str]:
    document = _itom()
    change(document["config"])
    path = tmp_path / "Pulumi.case.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as caught:
        load_stack_file(path, display="stacks/Pulumi.case.yaml")
    return caught.value.problems


def _dev_receiver() -> dict:
    dev = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    return dev["config"]["secure-export:receiver"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda c: c.update({"secure-export:receiver": _dev_receiver()}),
            "secure-export: secure-export:receiver and secure-export:directEndpoint exclude each other",
        ),
        (
            lambda c: c.pop("secure-export:directEndpoint"),
            "secure-export: give secure-export:receiver (deploy the bundled receiver) or secure-export:directEndpoint",
        ),
        (
            lambda c: c["secure-export:directEndpoint"].update(url="http://contoso.service-now.com/x"),
            "secure-export:directEndpoint.url: string should match pattern",
        ),
        (
            lambda c: c["secure-export:directEndpoint"].update(
                url="https://contoso.service-now.com/api/now/table/em_event"
            ),
            "secure-export:directEndpoint: url for tool servicenow-em must be Event Management's inbound-event API",
        ),
        (
            lambda c: c["secure-export:directEndpoint"].update(url=SN_URL.replace("azuremonitor", "aws")),
            "must be Event Management's inbound-event API",
        ),
        (
            lambda c: c["secure-export:directEndpoint"].update(url=SN_URL.replace("https://", "https://svc:pw@")),
            "url must not carry credentials",
        ),
        (
            lambda c: c["secure-export:directEndpoint"].update(tool="jira"),
            "secure-export:directEndpoint.tool: input should be 'servicenow-em', 'bmc-helix' or 'other'",
        ),
        (
            lambda c: c.update({"secure-export:servicenow": {"url": "https://contoso.service-now.com"}}),
            "secure-export:servicenow configure the bundled receiver",
        ),
    ],
    ids=["both", "neither", "http", "sn-path", "sn-source", "userinfo", "tool", "unused-servicenow"],
)
def test_direct_endpoint_config_errors_name_the_keys(tmp_path, change, expected):
    problems = _problems(tmp_path, change)
    assert any(p.startswith("stacks/Pulumi.case.yaml: ") and expected in p for p in problems), problems


def test_bmc_and_other_tools_take_any_https_url(tmp_path):
    for tool in ("bmc-helix", "other"):
        document = _itom()
        document["config"]["secure-export:directEndpoint"] = {"tool": tool, "url": BMC_URL}
        path = tmp_path / f"Pulumi.{tool}.yaml"
        path.write_text(yaml.safe_dump(document))
        assert load_stack_file(path).config.direct_endpoint.url == BMC_URL


# -- plan ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def itom_plan() -> dict:
    return to_json(plan_stack(REPO, "itom"))


def test_itom_plan_has_no_receiver_and_the_action_group_points_at_servicenow(itom_plan):
    types = {r["type"] for r in itom_plan["resources"]}
    assert not types & set(RECEIVER_TYPES)
    assert {METRIC_ALERT, LOG_ALERT, ACTIVITY_ALERT, ACTION_GROUP} <= types
    (group,) = [r for r in itom_plan["resources"] if r["type"] == ACTION_GROUP]
    (webhook,) = group["inputs"]["webhookReceivers"]
    assert webhook["serviceUri"] == SN_URL and webhook["useAadAuth"] is True
    outputs = itom_plan["outputs"]
    assert {"tenantId", "clientId", "identifierUri", "accessTokenVersion"} <= set(outputs)
    assert outputs["directEndpointTool"] == "servicenow-em"
    assert "receiverUrl" not in outputs and "allowedSubscriptions" not in outputs


def test_plan_prints_the_servicenow_side_from_the_outputs(itom_plan):
    text = render_tree(itom_plan)
    outputs = itom_plan["outputs"]
    block = text.split("configure on the ServiceNow side", 1)[1]
    assert outputs["clientId"] in block  # v2: the Source field is the client id
    tenant = outputs["tenantId"]
    assert f"https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration" in block
    assert f"azp = {AZNS}" in block and "evt_mgmt_integration" in block and "sn_em_connector" in block


def test_tool_side_follows_the_token_version_and_the_tool():
    base = {"tenantId": "t-1", "clientId": "c-1", "identifierUri": "api://x", "webhookUrl": BMC_URL}
    v1 = "\n".join(tool_side_lines({**base, "accessTokenVersion": 1, "directEndpointTool": "servicenow-em"}))
    assert "api://x" in v1 and "https://login.microsoftonline.com/t-1/.well-known/openid-configuration" in v1
    assert f"appid = {AZNS}" in v1
    bmc = "\n".join(tool_side_lines({**base, "accessTokenVersion": 2, "directEndpointTool": "bmc-helix"}))
    assert (
        "Create Incident from Azure Alerts" in bmc and "Azure tenant ID: t-1" in bmc and "Application ID:  c-1" in bmc
    )
    other = "\n".join(tool_side_lines({**base, "accessTokenVersion": 2, "directEndpointTool": "other"}))
    assert "issuer https://login.microsoftonline.com/t-1/v2.0, audience c-1" in other
    assert tool_side_lines({**base, "receiverUrl": "https://r"}) == []


def test_console_script_plans_the_itom_stack():
    done = subprocess.run(
        [str(SECURE_EXPORT), "plan", "--stack", "itom"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "ContainerApp" not in done.stdout and "ReceiverService" not in done.stdout
    assert f"webhookUrl: {SN_URL}" in done.stdout
    assert "configure on the ServiceNow side" in done.stdout


def test_action_group_takes_exactly_one_of_receiver_base_url_and_service_uri():
    from secure_export.components import SecureWebhookActionGroup, SecureWebhookIdentity

    def program(**urls):
        def run():
            identity = SecureWebhookIdentity("id", {"display_name": "x"})
            SecureWebhookActionGroup(
                "ag",
                {
                    "resource_group_name": "rg",
                    "short_name": "ag",
                    "application_object_id": identity.application_object_id,
                    "identifier_uri": identity.identifier_uri,
                    "tenant_id": identity.tenant_id,
                    **urls,
                },
            )

        return run

    for urls in ({}, {"receiver_base_url": "https://r.example.net", "service_uri": SN_URL}):
        with pytest.raises(ValueError, match="exactly one of receiver_base_url .* or service_uri"):
            declare(program(**urls))
    (webhook,) = one(declare(program(service_uri=BMC_URL)), ACTION_GROUP).inputs["webhookReceivers"]
    assert webhook["serviceUri"] == BMC_URL  # used as is, no /api/alerts appended
