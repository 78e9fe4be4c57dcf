"""Each policy with a passing and a violating resource: through the shared rules (``plan --policy``) and
through the policy pack's real ``pulumi_policy`` objects (``pulumi preview --policy-pack policy``)."""

import io
import runpy

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import _NotApplicableError

from secure_export.contract import AZNS_AAD_WEBHOOK_CLIENT_ID, SECURE_WEBHOOK_ROLE
from secure_export.plan.cli import main as plan_main
from secure_export.plan.render import to_json
from secure_export.plan.run import plan_stack
from secure_export.review import policies
from secure_export.review.policies import RULES, Resource, evaluate
from secure_export.review.policy_check import check, plan_resources
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT
PACK = runpy.run_path(str(REPO / "policy" / "__main__.py"), run_name="secure_export_policy_pack")
AG_ID = "/subscriptions/1/resourceGroups/rg/providers/Microsoft.Insights/actionGroups/ag"


def secure_receiver(**overrides):
    receiver = {
        "name": "secure-export",
        "serviceUri": "https://receiver.example.net/api/alerts",
        "useAadAuth": True,
        "objectId": "11111111-1111-4111-8111-111111111111",
        "identifierUri": "api://secure-export-dev",
        "tenantId": "22222222-2222-4222-8222-222222222222",
        "useCommonAlertSchema": True,
    }
    receiver.update(overrides)
    return receiver


def group(**overrides):
    return Resource(
        policies.ACTION_GROUP, "ag", {"webhookReceivers": [secure_receiver(**overrides)]}, outputs={"id": AG_ID}
    )


def app(ingress=None, env=None):
    return Resource(
        policies.CONTAINER_APP,
        "receiver-app",
        {
            "configuration": {"ingress": ingress or {"external": True, "targetPort": 8080, "allowInsecure": False}},
            "template": {
                "containers": [
                    {"name": "receiver", "env": env or [{"name": "SECURE_EXPORT_ITSM", "value": "embedded"}]}
                ]
            },
        },
    )


def application(member_types):
    return Resource(
        policies.APPLICATION,
        "identity-app",
        {"appRoles": [{"value": SECURE_WEBHOOK_ROLE, "allowedMemberTypes": member_types, "enabled": True}]},
    )


def azns(**options):
    return Resource(
        policies.SERVICE_PRINCIPAL, "identity-azns-sp", {"clientId": AZNS_AAD_WEBHOOK_CLIENT_ID}, options=options
    )


def metric(auto_mitigate, depends_on=()):
    return Resource(
        policies.METRIC_ALERT,
        "cpu-high",
        {"autoMitigate": auto_mitigate, "actions": [{"actionGroupId": AG_ID}]},
        depends_on=frozenset(depends_on),
    )


def log(auto_mitigate, depends_on=("ag",)):
    return Resource(
        policies.LOG_ALERT,
        "errors",
        {"autoMitigate": auto_mitigate, "actions": {"actionGroups": [AG_ID]}},
        depends_on=frozenset(depends_on),
    )


# rule name -> (passing stack, violating stack, words the violation must say)
CASES = {
    "action-group-webhook-entra-auth": ([group()], [group(useAadAuth=False)], "does not use Entra ID auth"),
    "action-group-webhook-common-schema": ([group()], [group(useCommonAlertSchema=False)], "common alert schema"),
    "alert-rules-stateful": ([group(), metric(True), log(True)], [group(), log(False)], "autoMitigate: true"),
    "container-app-https-only": ([app()], [app(ingress={"external": True, "allowInsecure": True})], "allowInsecure"),
    "container-env-no-plain-secrets": (
        [app(env=[{"name": "SECURE_EXPORT_SERVICENOW_PASSWORD", "secretRef": "servicenow-password"}])],
        [app(env=[{"name": "SECURE_EXPORT_SERVICENOW_PASSWORD", "value": "hunter2"}])],
        "name says it is a secret",
    ),
    "webhook-app-role-allows-applications": (
        [application(["Application"])],
        [application(["User"])],
        "does not allow member type Application",
    ),
    "azns-service-principal-retained": (
        [azns(retainOnDelete=True, protect=False)],
        [azns(retainOnDelete=False, protect=False)],
        "retain_on_delete=True",
    ),
}


def test_every_rule_has_a_case_and_both_levels_exist():
    assert set(CASES) == {r.name for r in RULES}
    assert {r.level for r in RULES} == {"mandatory", "advisory"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_shared_rule_passes_and_violates(name):
    passing, violating, words = CASES[name]
    (rule,) = [r for r in RULES if r.name == name]
    assert evaluate(passing, [rule]) == []
    (violation,) = evaluate(violating, [rule])
    assert violation.policy == name and violation.level == rule.level and words in violation.message


def _opts(protect=False):
    return PolicyResourceOptions(
        protect=protect,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def _pack_policy(name):
    (policy,) = [p for p in PACK["build_policies"]() if p.name == name]
    return policy


def _pack_violations(name, stack):
    """Run the pack's policy over ``stack`` the way the engine would: per resource, or once for the stack."""
    policy = _pack_policy(name)
    found = []

    def report(message, urn=None):
        found.append((message, urn))

    if isinstance(policy, StackValidationPolicy):
        items = {}
        for r in stack:
            items[r.name] = PolicyResource(
                r.type, dict(r.props), f"urn:pulumi:dev::p::{r.type}::{r.name}", r.name, _opts(), None, None, [], {}
            )
        for r in stack:
            items[r.name].dependencies = [items[n] for n in r.depends_on if n in items]
        policy.validate(StackValidationArgs(list(items.values())), report)
    else:
        assert isinstance(policy, ResourceValidationPolicy)
        for r in stack:
            urn = f"urn:pulumi:dev::p::{r.type}::{r.name}"
            args = ResourceValidationArgs(
                r.type, dict(r.props), urn, r.name, _opts(r.options.get("protect", False)), None
            )
            policy.validate(args, report)
    return found


@pytest.mark.parametrize("name", sorted(set(CASES) - {"azns-service-principal-retained"}))
def test_pack_policy_passes_and_violates_with_real_pulumi_policy_objects(name):
    passing, violating, words = CASES[name]
    (rule,) = [r for r in RULES if r.name == name]
    assert (
        _pack_policy(name).enforcement_level
        == {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}[rule.level]
    )
    assert _pack_violations(name, passing) == []
    ((message, _),) = _pack_violations(name, violating)
    assert words in message


def test_an_older_plan_without_dependson_links_alerts_to_the_group_by_id():
    (violation,) = evaluate([group(), metric(False), log(False, depends_on=())][:2])
    assert violation.policy == "alert-rules-stateful" and violation.resource.name == "cpu-high"
    assert evaluate([group(), log(False, depends_on=())]) != []


def test_pack_links_a_stateless_alert_to_its_action_group_through_dependencies():
    # During `pulumi preview` the action group's id is unknown; the stack policy follows dependencies.
    stack = [
        group(),
        Resource(
            policies.METRIC_ALERT, "cpu-high", {"autoMitigate": False, "actions": [{}]}, depends_on=frozenset({"ag"})
        ),
    ]
    ((message, urn),) = _pack_violations("alert-rules-stateful", stack)
    assert "ag" in message and urn.endswith("::cpu-high")
    assert _pack_violations("alert-rules-stateful", [stack[1]]) == []


def test_pack_azns_rule_is_not_applicable_where_the_engine_hides_retain_on_delete():
    # pulumi_policy's PolicyResourceOptions has no retain_on_delete; protect is visible and suffices.
    assert _pack_violations("azns-service-principal-retained", [azns(protect=True)]) == []
    with pytest.raises(_NotApplicableError):
        _pack_violations("azns-service-principal-retained", [azns(protect=False)])


def test_pack_files_are_a_python_policy_pack():
    folder = REPO / "policy"
    assert "runtime:\n  name: python" in (folder / "PulumiPolicy.yaml").read_text(encoding="utf-8")
    assert "pulumi-policy>=" in (folder / "requirements.txt").read_text(encoding="utf-8")
    assert PACK["PACK_NAME"] == "secure-export"


@pytest.fixture(scope="module")
def prod():
    result = plan_stack(REPO, "prod")
    return to_json(result), [r.options for r in result.resources]


def test_the_offline_engine_records_retain_on_delete(prod):
    plan, options = prod
    by_client = {
        r["inputs"].get("clientId"): o
        for r, o in zip(plan["resources"], options, strict=True)
        if r["type"] == policies.SERVICE_PRINCIPAL
    }
    assert by_client[AZNS_AAD_WEBHOOK_CLIENT_ID]["retainOnDelete"] is True
    assert [o["retainOnDelete"] for c, o in by_client.items() if c != AZNS_AAD_WEBHOOK_CLIENT_ID] == [False]


def test_the_stacks_pass_every_policy(prod, capsys):
    plan, options = prod
    assert evaluate(plan_resources(plan, options)) == []
    for stack in ("dev", "prod"):
        assert plan_main(["--stack", stack, "--policy", "--project-dir", str(REPO)]) == 0
        assert "policies: 7 checked, no violations" in capsys.readouterr().out


def test_plan_policy_reports_each_violation_and_fails_on_a_mandatory_one(prod):
    plan, options = prod
    broken = {**plan, "resources": [dict(r) for r in plan["resources"]]}
    for resource in broken["resources"]:
        if resource["type"] == policies.CONTAINER_APP:
            resource["inputs"] = {
                **resource["inputs"],
                "configuration": {**resource["inputs"]["configuration"], "ingress": {"allowInsecure": True}},
            }
        if resource["type"] == policies.METRIC_ALERT:
            resource["inputs"] = {**resource["inputs"], "autoMitigate": False}
    retained = [{**o, "retainOnDelete": False} for o in options]
    out = io.StringIO()
    assert check(broken, retained, out) == 1
    text = out.getvalue()
    assert "mandatory: container-app-https-only: azure-native:app:ContainerApp secure-export-receiver-app:" in text
    assert (
        "mandatory: alert-rules-stateful: azure-native:monitor:MetricAlert "
        "secure-export-rules-metric-prod-sql-dtu-high:" in text
    )
    assert "advisory: azns-service-principal-retained: azuread:index/servicePrincipal:ServicePrincipal" in text
    assert "policies: 4 mandatory and 1 advisory violation(s)" in text
    advisory_only = io.StringIO()
    assert check(plan, retained, advisory_only) == 0
    assert "advisory: azns-service-principal-retained" in advisory_only.getvalue()


def test_a_plain_secret_in_the_plan_is_caught_because_the_plan_masks_it():
    env = [
        {"name": "SECURE_EXPORT_SERVICENOW_URL", "value": "https://user:pw@contoso.service-now.com"},
        {"name": "X", "value": "[secret]"},
    ]
    messages = policies.check_env_no_plain_secrets(app(env=env))
    assert len(messages) == 2 and "a URL with a password" in messages[0] and "a masked Pulumi secret" in messages[1]


def test_the_pack_serves_its_policies_to_an_engine_over_grpc():
    """Start policy/__main__.py as the Pulumi engine would and analyze a resource through the Analyzer service."""
    import subprocess
    import sys

    import grpc
    from google.protobuf import empty_pb2, struct_pb2
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

    pack = subprocess.Popen(
        [sys.executable, str(REPO / "policy" / "__main__.py")],
        cwd=REPO / "policy",
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(pack.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            assert info.name == "secure-export"
            assert {p.name for p in info.policies} == {r.name for r in RULES}
            properties = struct_pb2.Struct()
            properties.update({"webhookReceivers": [secure_receiver(useAadAuth=False)]})
            answer = stub.Analyze(
                analyzer_pb2.AnalyzeRequest(
                    type=policies.ACTION_GROUP,
                    properties=properties,
                    urn=f"urn:pulumi:dev::secure-export::{policies.ACTION_GROUP}::ag",
                    name="ag",
                    options=analyzer_pb2.AnalyzerResourceOptions(),
                ),
                timeout=30,
            )
        (diagnostic,) = answer.diagnostics
        assert diagnostic.policyName == "action-group-webhook-entra-auth"
        assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
        assert "does not use Entra ID auth" in diagnostic.message
    finally:
        pack.kill()
        pack.wait(timeout=10)


def test_plan_policy_works_after_asyncio_run_left_the_thread_without_a_loop(capsys):
    # The receiver's commands use asyncio.run(), which leaves the main thread without an event loop.
    import asyncio

    async def nothing():
        return None

    previous = asyncio.get_event_loop_policy().get_event_loop()
    asyncio.run(nothing())
    previous.close()  # no longer any thread's loop: close it as a process would at exit
    assert plan_main(["--stack", "dev", "--policy", "--project-dir", str(REPO)]) == 0
    assert "no violations" in capsys.readouterr().out


def test_every_resource_type_the_program_declares_has_its_replacement_rules(prod):
    """secure_export/review/replacement.py is the one list: a new resource type needs its entry (with a source)."""
    from secure_export.review.replacement import REPLACE_ON_CHANGES

    plan, _ = prod
    declared = {r["type"] for r in plan["resources"] if not r["type"].startswith("secure-export:index:")}
    assert declared - set(REPLACE_ON_CHANGES) == set()
