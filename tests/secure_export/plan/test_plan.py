import json
import subprocess
import sys
from pathlib import Path

import pytest

from secure_export.plan.cli import main
from secure_export.plan.render import render_tree, to_json
from secure_export.plan.run import plan_stack
from secure_export.stack.loading import load_stack_file
from tests.support.paths import REPO_ROOT
from tests.support.plans import (
    ACTION_GROUP,
    APP_ROLE_ASSIGNMENT,
    APPLICATION,
    AZNS,
    CONTAINER_APP,
    LOG_ALERT,
    METRIC_ALERT,
    SERVICE_PRINCIPAL,
)

REPO = REPO_ROOT
SECURE_EXPORT = Path(sys.executable).parent / "secure-export"


@pytest.fixture(scope="module")
def prod() -> dict:
    return to_json(plan_stack(REPO, "prod"))


def _of(plan, typ):
    return [r for r in plan["resources"] if r["type"] == typ]


def _one(plan, typ):
    found = _of(plan, typ)
    assert len(found) == 1, [r["name"] for r in found]
    return found[0]


def test_json_contract_shape(prod):
    assert prod["stack"] == "prod"
    assert list(prod) == ["stack", "offline", "resources", "outputs"]
    assert prod["offline"] is True
    for resource in prod["resources"]:
        assert list(resource) == ["type", "name", "parent", "inputs", "outputs", "dependsOn"]
    names = {r["name"] for r in prod["resources"]}
    assert all(r["parent"] is None or r["parent"] in names for r in prod["resources"])
    assert "receiverUrl" in prod["outputs"]


def test_application_has_the_deployer_as_owner_and_an_application_only_role(prod):
    app = _one(prod, APPLICATION)
    assert prod["outputs"]["deployerObjectId"] in app["inputs"]["owners"]
    (role,) = app["inputs"]["appRoles"]
    assert role["allowedMemberTypes"] == ["Application"]
    assert role["value"] == "ActionGroupsSecureWebhook"


def test_one_role_assignment_from_the_azns_principal_to_the_apps_principal(prod):
    app = _one(prod, APPLICATION)
    sps = {sp["inputs"]["clientId"]: sp for sp in _of(prod, SERVICE_PRINCIPAL)}
    azns, own = sps[AZNS], sps[app["outputs"]["clientId"]]
    assert azns["inputs"]["useExisting"] is True
    (assignment,) = _of(prod, APP_ROLE_ASSIGNMENT)
    assert assignment["inputs"]["principalObjectId"] == azns["outputs"]["objectId"]
    assert assignment["inputs"]["resourceObjectId"] == own["outputs"]["objectId"]
    assert assignment["inputs"]["appRoleId"] == app["inputs"]["appRoles"][0]["id"]


def test_every_webhook_receiver_is_a_secure_webhook_to_the_application(prod):
    app = _one(prod, APPLICATION)
    # The operators' group (alerts on the receiver itself) is e-mail only: it must never call the receiver.
    groups = [g for g in _of(prod, ACTION_GROUP) if not g["name"].endswith("-operators")]
    assert groups
    operators = [g for g in _of(prod, ACTION_GROUP) if g["name"].endswith("-operators")]
    assert operators and all(not g["inputs"].get("webhookReceivers") for g in operators)
    for group in groups:
        assert group["inputs"]["webhookReceivers"]
        for receiver in group["inputs"]["webhookReceivers"]:
            assert receiver["useAadAuth"] is True
            assert receiver["useCommonAlertSchema"] is True
            assert receiver["objectId"] == app["outputs"]["objectId"]
            assert receiver["identifierUri"] in app["inputs"]["identifierUris"]
            assert receiver["serviceUri"].startswith("https://")


def test_metric_and_log_rules_are_stateful_and_notify_an_action_group_of_the_stack(prod):
    group_ids = {g["outputs"]["id"] for g in _of(prod, ACTION_GROUP)}
    metric, log = _of(prod, METRIC_ALERT), _of(prod, LOG_ALERT)
    assert len(metric) >= 2 and len(log) >= 1
    for rule in metric:
        assert rule["inputs"]["autoMitigate"] is True
        assert {a["actionGroupId"] for a in rule["inputs"]["actions"]} <= group_ids
    for rule in log:
        assert rule["inputs"]["autoMitigate"] is True
        assert set(rule["inputs"]["actions"]["actionGroups"]) <= group_ids


def test_container_app_has_https_only_external_ingress_probes_and_no_plain_secret(prod):
    app = _one(prod, CONTAINER_APP)
    ingress = app["inputs"]["configuration"]["ingress"]
    assert ingress["external"] is True and ingress["allowInsecure"] is False
    (container,) = app["inputs"]["template"]["containers"]
    assert {p["type"]: p["httpGet"]["path"] for p in container["probes"]} == {
        "Liveness": "/healthz",
        "Readiness": "/readyz",
    }
    assert all(s["value"] == "[secret]" for s in app["inputs"]["configuration"]["secrets"])
    by_name = {e["name"]: e for e in container["env"]}
    assert by_name["SECURE_EXPORT_SERVICENOW_PASSWORD"] == {
        "name": "SECURE_EXPORT_SERVICENOW_PASSWORD",
        "secretRef": "servicenow-password",
    }
    assert not any("PASSWORD" in e["name"] or "SECRET" in e["name"] for e in container["env"] if "value" in e)


def test_output_contains_no_secret_value(prod):
    loaded = load_stack_file(REPO / "stacks" / "Pulumi.prod.yaml")
    text = json.dumps(prod)
    ciphertext = loaded.pulumi_config["secure-export:servicenowPassword"]
    assert ciphertext not in text
    assert "[secret]" in text
    env = _one(prod, "azure-native:app:ManagedEnvironment")
    assert env["inputs"]["appLogsConfiguration"]["logAnalyticsConfiguration"]["sharedKey"] == "[secret]"
    # Prod runs on PostgreSQL with Entra ID only: no share key and no database password exist at all.
    assert not _of(prod, "azure-native:app:ManagedEnvironmentsStorage")
    server = _one(prod, "azure-native:dbforpostgresql:Server")
    assert "administratorLoginPassword" not in server["inputs"]
    dev = to_json(plan_stack(REPO, "dev"))  # the SQLite share's key is a secret in the plan
    storage = _one(dev, "azure-native:app:ManagedEnvironmentsStorage")
    assert storage["inputs"]["properties"]["azureFile"]["accountKey"] == "[secret]"


def test_secrets_given_in_plaintext_to_the_engine_are_masked_too(tmp_path):
    result = plan_stack(REPO, "prod")
    secrets = result.secret_values
    assert secrets
    assert not any(s in json.dumps(to_json(result)) for s in secrets)


def test_ids_are_deterministic_and_distinct(prod):
    again = to_json(plan_stack(REPO, "prod"))
    assert json.dumps(again) == json.dumps(prod)
    ids = [r["outputs"]["id"] for r in prod["resources"] if "id" in r["outputs"]]
    assert len(ids) == len(set(ids)) > 10
    dev = to_json(plan_stack(REPO, "dev"))
    assert _one(dev, APPLICATION)["outputs"]["objectId"] != _one(prod, APPLICATION)["outputs"]["objectId"]


def test_tree_lists_every_resource_and_the_outputs(prod):
    tree = render_tree(prod)
    for resource in prod["resources"]:
        assert resource["name"] in tree
    assert "outputs:" in tree and prod["outputs"]["receiverUrl"] in tree


def _named(plan, name):
    (found,) = [r for r in plan["resources"] if r["name"] == name]
    return found


def test_depends_on_lists_what_each_resource_waits_for_explicitly_or_through_its_inputs(prod):
    names = {r["name"] for r in prod["resources"]}
    for resource in prod["resources"]:
        assert resource["dependsOn"] == sorted(set(resource["dependsOn"]))
        assert set(resource["dependsOn"]) <= names - {resource["name"]}
    # through inputs: the action group's webhook names the application's object id
    assert "secure-export-identity-app" in _named(prod, "secure-export-action-group-ag")["dependsOn"]
    # through inputs: every rule notifies the action group (the receiver's own watch rules notify
    # the operators' group instead, never the receiver's webhook)
    for rule in _of(prod, METRIC_ALERT) + _of(prod, LOG_ALERT):
        expected = "secure-export-receiver-operators" if "-watch-" in rule["name"] else "secure-export-action-group-ag"
        assert expected in rule["dependsOn"]
    # explicit depends_on: the app's first revision pulls only after AcrPull is granted
    assert "secure-export-receiver-acr-pull" in _named(prod, "secure-export-receiver-app")["dependsOn"]
    # nothing to wait for
    assert _named(prod, "secure-export-identity-app")["dependsOn"] == []


def test_tree_shows_what_each_resource_waits_for(prod):
    lines = render_tree(prod).splitlines()
    at = next(i for i, line in enumerate(lines) if "secure-export-identity-sp  (" in line)
    assert lines[at + 1].strip().endswith("waits for: secure-export-identity-app")


def test_main_prints_json_and_the_tree(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["--stack", "dev", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["stack"] == "dev"
    assert main(["--stack", "dev"]) == 0
    assert "secure-export-identity-app" in capsys.readouterr().out
    assert main([]) == 2


def test_console_script_prints_the_prod_plan_as_json_byte_for_byte_the_same(tmp_path):
    import os

    def plan(seed: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SECURE_EXPORT), "plan", "--stack", "prod", "--json", "--project-dir", str(REPO)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )

    first, second = plan("1"), plan("2")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    document = json.loads(first.stdout)
    assert _one(document, CONTAINER_APP)["inputs"]["configuration"]["ingress"]["allowInsecure"] is False
    assert "v1:" not in first.stdout


@pytest.mark.parametrize(
    "stack", sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in (REPO / "stacks").glob("Pulumi.*.yaml"))
)
def test_every_stack_plans_and_wires_the_secure_webhook(stack):
    plan = to_json(plan_stack(REPO, stack))
    app = _one(plan, APPLICATION)
    (group,) = [g for g in _of(plan, ACTION_GROUP) if not g["name"].endswith("-operators")]
    (webhook,) = group["inputs"]["webhookReceivers"]
    assert webhook["objectId"] == app["outputs"]["objectId"]
    assert plan["outputs"]["webhookUrl"] == webhook["serviceUri"]


def test_dev_stack_uses_the_embedded_backend_without_credentials():
    plan = to_json(plan_stack(REPO, "dev"))
    (container,) = _one(plan, CONTAINER_APP)["inputs"]["template"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SECURE_EXPORT_ITSM"]["value"] == "embedded"
    assert not any(name.startswith("SECURE_EXPORT_SERVICENOW_") for name in env)
    assert "secrets" not in _one(plan, CONTAINER_APP)["inputs"]["configuration"]


def test_any_stack_file_can_be_planned_with_this_checkouts_program(tmp_path):
    from secure_export.plan.run import plan_file

    path = tmp_path / "Pulumi.bench.yaml"
    path.write_text((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    result = plan_file(path)
    assert result.stack == "bench"
    assert len([r for r in result.resources if r.type == METRIC_ALERT]) == 1


def _one_resource_group() -> None:
    from pulumi_azure_native import resources

    resources.ResourceGroup("rg", resource_group_name="rg-offline")


def test_offline_engine_restores_the_sdk_and_survives_a_release_without_its_private_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The engine swaps the SDK's private per-resource stack-trace builder out for the length of a
    # run (a saving only): it must put it back, and a Pulumi release without it must still plan.
    import types

    from pulumi.runtime import resource as pulumi_resource

    from secure_export.plan import offline

    original = pulumi_resource._get_stack_trace
    assert len(offline.run_program(_one_resource_group, stack="dev").resources) == 1
    assert pulumi_resource._get_stack_trace is original
    # The engine's view of an SDK module without the hook: nothing to swap, the plan still runs.
    monkeypatch.setattr(offline, "pulumi_resource", types.SimpleNamespace())
    assert len(offline.run_program(_one_resource_group, stack="dev").resources) == 1
    assert pulumi_resource._get_stack_trace is original


def test_a_secret_stack_output_prints_as_secret_in_json_and_in_the_tree():
    """A stack output wrapped in ``pulumi.Output.secret`` is masked even when its value is no known secret.

    Guards: ``to_json`` printing ``result.secret_outputs`` like plain outputs (docs/testing.md, "Mutations").
    """
    import pulumi

    from secure_export.plan import offline

    plaintext = "s3cr3t-output-6b1f"  # not a config secret: only the secret envelope says so

    def program() -> None:
        pulumi.export("apiKey", pulumi.Output.secret(plaintext))
        pulumi.export("nested", pulumi.Output.secret({"token": plaintext, "n": 1}))
        pulumi.export("region", "westeurope")

    result = offline.run_program(program, stack="dev")
    assert plaintext not in result.secret_values  # so value-based masking alone would not catch it
    plan = to_json(result)
    assert plan["outputs"] == {"apiKey": "[secret]", "nested": "[secret]", "region": "westeurope"}
    assert plaintext not in json.dumps(plan)
    tree = render_tree(plan)
    assert "apiKey: [secret]" in tree and plaintext not in tree
