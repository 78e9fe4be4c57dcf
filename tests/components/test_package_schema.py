import json
from pathlib import Path

import pytest
import yaml
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.provider.experimental.schema import generate_schema

import secure_export.components as components
from secure_export.components import COMPONENTS, PACKAGE_NAME

PACKAGE_DIR = Path(components.__file__).resolve().parent


def _schema() -> dict:
    result = Analyzer(PACKAGE_NAME).analyze(COMPONENTS)
    spec = generate_schema(
        PACKAGE_NAME,
        "0.1.0",
        None,
        result["component_definitions"],
        result["type_definitions"],
        list(result["dependencies"]),
    )
    return json.loads(json.dumps(spec.to_json()))


def test_every_component_is_in_the_schema_under_the_index_module():
    resources = _schema()["resources"]
    assert set(resources) == {f"secure-export:index:{c.__name__}" for c in COMPONENTS}
    assert all(r["isComponent"] is True and r.get("description") for r in resources.values())


def test_inputs_are_camel_case_described_and_required_where_needed():
    resources = _schema()["resources"]
    group = resources["secure-export:index:SecureWebhookActionGroup"]
    inputs = group["inputProperties"]
    assert {
        "resourceGroupName",
        "shortName",
        "receiverBaseUrl",
        "serviceUri",
        "applicationObjectId",
        "identifierUri",
        "tenantId",
    } <= set(inputs)
    assert all(
        prop.get("description") for resource in resources.values() for prop in resource["inputProperties"].values()
    )
    assert set(group["requiredInputs"]) == {
        "applicationObjectId",
        "identifierUri",
        "resourceGroupName",
        "shortName",
        "tenantId",
    }
    assert "emailReceivers" not in group["requiredInputs"]
    assert not {"receiver", "directEndpoint"} & set(resources["secure-export:index:SecureExport"]["requiredInputs"])
    identity = resources["secure-export:index:SecureWebhookIdentity"]
    assert identity["requiredInputs"] == ["displayName"]


def test_outputs_are_declared():
    resources = _schema()["resources"]
    identity = resources["secure-export:index:SecureWebhookIdentity"]
    assert {"applicationObjectId", "clientId", "identifierUri", "tenantId", "roleId"} <= set(identity["properties"])
    assert set(identity["required"]) >= {"applicationObjectId", "clientId", "identifierUri", "tenantId", "roleId"}
    assert "accessTokenVersion" in identity["properties"]
    assert {"receiverUrl", "webhookUrl", "actionGroupId", "accessTokenVersion", "directEndpointTool"} <= set(
        resources["secure-export:index:SecureExport"]["properties"]
    )
    assert resources["secure-export:index:AlertRules"]["properties"]["metricAlertIds"]["type"] == "array"


def test_nested_rule_types_and_dependencies():
    schema = _schema()
    types = schema["types"]
    rule = types["secure-export:index:MetricAlertRuleArgs"]
    assert {"severity", "scopes", "evaluationFrequency", "windowSize", "criteria"} <= set(rule["required"])
    assert rule["properties"]["criteria"]["items"]["$ref"] == "#/types/secure-export:index:MetricCriterionArgs"
    assert {d["name"] for d in schema["dependencies"]} <= {"azure-native", "azuread"}


def test_the_plugin_installs_this_distribution_and_imports_it_under_its_own_name():
    # `pulumi package add` installs requirements.txt into the plugin's venv: the repository, with its Pulumi extra.
    requirements = [
        line.strip()
        for line in (PACKAGE_DIR / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert requirements == ["..[infra]"]
    entry = (PACKAGE_DIR / "__main__.py").read_text()
    assert "from secure_export.components import COMPONENTS, PACKAGE_NAME" in entry


def test_plugin_manifest_and_entry_point_host_every_component():
    manifest = yaml.safe_load((PACKAGE_DIR / "PulumiPlugin.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    entry = (PACKAGE_DIR / manifest.get("main", "__main__.py")).read_text()
    assert "component_provider_host(COMPONENTS, PACKAGE_NAME" in entry
    assert PACKAGE_NAME == "secure-export"


@pytest.mark.parametrize("where", ["elsewhere", "plugin-folder"])
def test_entry_point_serves_the_schema_over_the_provider_protocol(tmp_path, where):
    import subprocess
    import sys

    import grpc
    from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

    # What `pulumi package add` does: start the plugin's entry point, read its port, ask for the schema.
    process = subprocess.Popen(
        [sys.executable, str(PACKAGE_DIR / "__main__.py"), "127.0.0.1:1"],
        # The plugin runs from its own folder, whose secure_export.py must not shadow the package.
        cwd=tmp_path if where == "elsewhere" else PACKAGE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(process.stdout.readline().strip())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            schema = json.loads(stub.GetSchema(provider_pb2.GetSchemaRequest(version=0), timeout=60).schema)
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert schema["name"] == "secure-export"
    assert set(schema["resources"]) == {f"secure-export:index:{c.__name__}" for c in COMPONENTS}
    assert schema["resources"] == _schema()["resources"]
