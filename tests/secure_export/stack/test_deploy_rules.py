"""Deploy rules (secure_export/stack/deploy_rules.py): what Azure refuses is refused at plan time, naming the key."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from secure_export.components import AlertRules
from secure_export.stack.config import ConfigError
from secure_export.stack.loading import load_stack_file
from tests.support.paths import REPO_ROOT
from tests.support.plans import LOG_ALERT, declare, log_rule, one

REPO = REPO_ROOT
AG = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Insights/actionGroups/ag"
SUB = "6f1c2d3e-0a4b-4c5d-8e9f-0a1b2c3d4e5f"
WORKSPACE = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/w"


def _stack(tmp_path: Path, change: Any) -> Path:
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    change(document["config"])
    path = tmp_path / "Pulumi.case.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _problems(tmp_path: Path, change: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_stack_file(_stack(tmp_path, change), display="stacks/Pulumi.case.yaml")
    return caught.value.problems


def _warnings(tmp_path: Path, change: Any) -> list[str]:
    # The dev stack's placeholders (example GUIDs, names) warn too: tests/secure_export/stack/test_placeholders.py.
    warnings = load_stack_file(_stack(tmp_path, change), display="stacks/Pulumi.case.yaml").warnings
    return [w for w in warnings if ": placeholder: " not in w]


def _with_log(**overrides: Any) -> Any:
    rule = {
        "name": "dev-errors",
        "severity": 2,
        "scopes": [WORKSPACE],
        "evaluationFrequency": "PT5M",
        "windowSize": "PT15M",
        "query": "AppRequests | where ResultCode startswith '5'",
        "timeAggregation": "Count",
        "operator": "GreaterThan",
        "threshold": 0,
        **overrides,
    }
    return lambda c: c["secure-export:alertRules"].update(log=[rule])


def _rules(**args: Any) -> Any:
    def program() -> None:
        AlertRules("rules", {"resource_group_name": "rg", "action_group_id": AG, "location": "westeurope", **args})

    return program


def test_mute_on_a_stateful_log_rule_is_refused_naming_the_key(tmp_path):
    (problem,) = _problems(tmp_path, _with_log(muteActionsDuration="PT30M"))
    assert problem.startswith("stacks/Pulumi.case.yaml: secure-export:alertRules.log[0].muteActionsDuration: ")
    assert "Auto mitigation must be disabled when action suppression is set" in problem
    with pytest.raises(ValueError, match=r"log rule 'errors': mute_actions_duration: .*Auto mitigation"):
        declare(_rules(log_alerts=[log_rule(mute_actions_duration="PT30M")]))


def test_mute_with_explicit_auto_mitigate_false_is_accepted_with_a_warning(tmp_path):
    (warning,) = _warnings(tmp_path, _with_log(muteActionsDuration="PT30M", autoMitigate=False))
    assert warning.startswith("stacks/Pulumi.case.yaml: secure-export:alertRules.log[0].autoMitigate: ")
    assert "never sends Resolved" in warning
    result = declare(_rules(log_alerts=[log_rule(mute_actions_duration="PT30M", auto_mitigate=False)]))
    alert = one(result, LOG_ALERT)
    assert alert.inputs["autoMitigate"] is False
    assert alert.inputs["muteActionsDuration"] == "PT30M"


def _service_health(scopes: list[str]) -> Any:
    rule = {"name": "health", "category": "ServiceHealth", "incidentTypes": ["Incident"], "scopes": scopes}
    return lambda c: c["secure-export:alertRules"].update(activityLog=[rule])


@pytest.mark.parametrize(
    "scopes",
    [
        [f"/subscriptions/{SUB}", "/subscriptions/7d2e9a41-6c5b-4f38-a1e0-9b8c7d6e5f4a"],
        [f"/subscriptions/{SUB}/resourceGroups/rg"],
    ],
    ids=["two-subscriptions", "resource-group"],
)
def test_service_health_rule_watches_exactly_one_subscription(tmp_path, scopes):
    (problem,) = _problems(tmp_path, _service_health(scopes))
    assert problem.startswith("stacks/Pulumi.case.yaml: secure-export:alertRules.activityLog[0].scopes: ")
    assert "ScopeIsInvalid" in problem
    rule = {"name": "health", "category": "ServiceHealth", "scopes": scopes}
    with pytest.raises(ValueError, match="activity log rule 'health': scopes: .*exactly one subscription"):
        declare(_rules(activity_log_alerts=[rule]))


def test_service_health_rule_on_one_subscription_is_accepted(tmp_path):
    assert _warnings(tmp_path, _service_health([f"/subscriptions/{SUB}"])) == []


SUB_2 = "7d2e9a41-6c5b-4f38-a1e0-9b8c7d6e5f4a"
GATEWAY = "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/{name}"


def _multi_metric(scopes: list[str], target: str = "Microsoft.Network/applicationGateways") -> dict[str, Any]:
    return {
        "name": "gateways",
        "severity": 1,
        "scopes": scopes,
        "targetResourceType": target,
        "targetResourceRegion": "westeurope",
        "evaluationFrequency": "PT1M",
        "windowSize": "PT5M",
        "criteria": [
            {
                "metricName": "UnhealthyHostCount",
                "timeAggregation": "Maximum",
                "operator": "GreaterThan",
                "threshold": 0,
            }
        ],
    }


def _with_metric(rule: dict[str, Any]) -> Any:
    return lambda c: c["secure-export:alertRules"].update(metric=[rule])


def _snake(rule: dict[str, Any]) -> dict[str, Any]:
    from secure_export.stack.config import MetricRuleConfig

    return MetricRuleConfig.model_validate(rule).model_dump(exclude_none=True)


def test_multi_resource_metric_rule_keeps_one_subscription(tmp_path):
    rule = _multi_metric([GATEWAY.format(sub=SUB, name="a"), GATEWAY.format(sub=SUB_2, name="b")])
    (problem,) = _problems(tmp_path, _with_metric(rule))
    assert problem.startswith("stacks/Pulumi.case.yaml: secure-export:alertRules.metric[0].scopes: ")
    assert "one subscription" in problem
    with pytest.raises(ValueError, match="metric rule 'gateways': scopes: .*one subscription"):
        declare(_rules(metric_alerts=[_snake(rule)]))


def test_multi_resource_metric_rule_keeps_one_resource_type(tmp_path):
    vm = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
    rule = _multi_metric([GATEWAY.format(sub=SUB, name="a"), vm])
    (problem,) = _problems(tmp_path, _with_metric(rule))
    assert problem.startswith("stacks/Pulumi.case.yaml: secure-export:alertRules.metric[0].scopes[1]: ")
    assert "Microsoft.Compute/virtualMachines" in problem


def test_multi_resource_metric_rule_needs_target_type_and_region(tmp_path):
    rule = _multi_metric([GATEWAY.format(sub=SUB, name="a"), GATEWAY.format(sub=SUB, name="b")])
    del rule["targetResourceRegion"]
    (problem,) = _problems(tmp_path, _with_metric(rule))
    assert "secure-export:alertRules.metric[0]: " in problem and "targetResourceRegion" in problem


def test_multi_resource_metric_rule_of_one_kind_is_accepted(tmp_path):
    rule = _multi_metric([GATEWAY.format(sub=SUB, name="a"), GATEWAY.format(sub=SUB, name="b")])
    assert _warnings(tmp_path, _with_metric(rule)) == []


def test_resource_type_of_nested_ids():
    from secure_export.stack.deploy_rules import resource_type

    db = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Sql/servers/s1/databases/d1"
    assert resource_type(db) == "Microsoft.Sql/servers/databases"
    assert resource_type(f"/subscriptions/{SUB}/resourceGroups/rg") is None
    assert resource_type(f"/subscriptions/{SUB}") is None


NO_TIME = "AppRequests | summarize Errors = count() by _ResourceId, AppRoleName"
BINNED = "AppRequests | summarize Errors = count() by bin(TimeGenerated, 15m), _ResourceId"
PERIODS = {"evaluationPeriods": 2, "minFailingPeriods": 2}


def test_several_evaluation_periods_without_a_time_column_are_refused(tmp_path):
    change = _with_log(query=NO_TIME, timeAggregation="Total", metricMeasureColumn="Errors", failingPeriods=PERIODS)
    (problem,) = _problems(tmp_path, change)
    assert problem.startswith(
        "stacks/Pulumi.case.yaml: secure-export:alertRules.log[0].failingPeriods.evaluationPeriods: is 2, "
    )
    assert "no time column" in problem
    with pytest.raises(ValueError, match="log rule 'errors': failing_periods.evaluation_periods: is 2"):
        declare(_rules(log_alerts=[log_rule(query=NO_TIME)]))


def test_several_evaluation_periods_with_a_binned_time_column_are_accepted(tmp_path):
    change = _with_log(query=BINNED, timeAggregation="Total", metricMeasureColumn="Errors", failingPeriods=PERIODS)
    assert _warnings(tmp_path, change) == []


def test_several_evaluation_periods_on_a_query_plan_cannot_read_are_warned_about(tmp_path):
    (warning,) = _warnings(tmp_path, _with_log(query="AppRequests | where Success == false", failingPeriods=PERIODS))
    assert warning.startswith(
        "stacks/Pulumi.case.yaml: secure-export:alertRules.log[0].failingPeriods.evaluationPeriods: "
    )
    assert "cannot tell" in warning


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("T | summarize max(TimeGenerated) by Computer | where x < ago(5m)", False),
        ("T | summarize count() by bin(TimeGenerated, 5m), Computer", True),
        ("T | project TimeGenerated, CounterValue", True),
        ("T | project Computer", False),
        ("T | count", False),
        ("T | where Message == 'a | summarize x by TimeGenerated'", None),
        ("T | summarize count() by Computer | extend TimeGenerated = now()", None),
        ("T", None),
    ],
)
def test_query_time_column_reading(query, expected):
    from secure_export.stack.deploy_rules import query_time_column

    assert query_time_column(query) is expected


SILENCE = "Heartbeat | summarize LastBeat = max(TimeGenerated) by Computer | where LastBeat < ago(5m)"


def test_heartbeat_rule_with_a_short_window_is_warned_about(tmp_path):
    (warning,) = _warnings(tmp_path, _with_log(query=SILENCE, windowSize="PT10M"))
    assert warning.startswith("stacks/Pulumi.case.yaml: secure-export:alertRules.log[0].windowSize: is PT10M ")
    assert "resolves while it is still silent" in warning
    assert _warnings(tmp_path, _with_log(query=SILENCE, windowSize="P1D")) == []


def test_example_stacks_heartbeat_rules_outlive_the_silence():
    from secure_export.stack.deploy_rules import SILENCE_WINDOW_SECONDS
    from secure_export.stack.validation import duration_seconds

    heartbeats = []
    for path in sorted((REPO / "stacks").glob("Pulumi.*.yaml")):
        for rule in load_stack_file(path).config.alert_rules.log:
            if "ago(" in rule.query:
                heartbeats.append(rule.name)
                assert duration_seconds(rule.window_size) >= SILENCE_WINDOW_SECONDS, rule.name
    assert heartbeats


METRIC = {
    "name": "cpu",
    "severity": 2,
    "scopes": [f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"],
    "evaluationFrequency": "PT5M",
    "windowSize": "PT15M",
    "criteria": [
        {"metricName": "Percentage CPU", "timeAggregation": "Average", "operator": "GreaterThan", "threshold": 90}
    ],
}


@pytest.mark.parametrize(
    ("change", "key", "text"),
    [
        (_with_metric({**METRIC, "evaluationFrequency": "PT10M"}), "metric[0].evaluationFrequency", "got PT10M"),
        (_with_metric({**METRIC, "windowSize": "PT2H"}), "metric[0].windowSize", "got PT2H"),
        (_with_log(evaluationFrequency="PT20M", windowSize="PT1H"), "log[0].evaluationFrequency", "got PT20M"),
        (_with_log(windowSize="P3D"), "log[0].windowSize", "got P3D"),
        (_with_log(muteActionsDuration="PT12H", autoMitigate=False), "log[0].muteActionsDuration", "got PT12H"),
    ],
    ids=["metric-frequency", "metric-window", "log-frequency", "log-window", "log-mute"],
)
def test_frequencies_windows_and_mute_durations_azure_does_not_take_are_refused(tmp_path, change, key, text):
    problems = _problems(tmp_path, change)
    assert any(
        p.startswith(f"stacks/Pulumi.case.yaml: secure-export:alertRules.{key}: ") and text in p for p in problems
    )


def test_equal_durations_in_another_spelling_are_accepted(tmp_path):
    assert _warnings(tmp_path, _with_metric({**METRIC, "evaluationFrequency": "PT60M", "windowSize": "PT60M"})) == []


def test_log_lookback_beyond_two_days_is_refused(tmp_path):
    change = _with_log(
        windowSize="P1D",
        query=BINNED.replace("15m", "1d"),
        timeAggregation="Total",
        metricMeasureColumn="Errors",
        failingPeriods={"evaluationPeriods": 3, "minFailingPeriods": 1},
    )
    (problem,) = _problems(tmp_path, change)
    assert "secure-export:alertRules.log[0].failingPeriods.evaluationPeriods: 3 periods of P1D" in problem
    with pytest.raises(ValueError, match="48 hours"):
        declare(
            _rules(
                log_alerts=[
                    log_rule(window_size="P1D", failing_periods={"evaluation_periods": 3, "min_failing_periods": 1})
                ]
            )
        )


def test_more_than_six_log_dimensions_are_refused(tmp_path):
    dims = [{"name": f"Col{i}", "operator": "Include", "values": ["*"]} for i in range(7)]
    (problem,) = _problems(tmp_path, _with_log(dimensions=dims))
    assert problem.startswith("stacks/Pulumi.case.yaml: secure-export:alertRules.log[0].dimensions: lists 7 dimensions")
    assert _warnings(tmp_path, _with_log(dimensions=dims[:6])) == []


def test_one_minute_log_rule_with_operations_azure_cannot_rewrite_is_warned_about(tmp_path):
    query = "union AppRequests, AppExceptions | take 100"
    (warning,) = _warnings(tmp_path, _with_log(evaluationFrequency="PT1M", windowSize="PT5M", query=query))
    assert warning.startswith("stacks/Pulumi.case.yaml: secure-export:alertRules.log[0].evaluationFrequency: is PT1M ")
    assert "take, union" in warning
    assert _warnings(tmp_path, _with_log(evaluationFrequency="PT5M", query=query)) == []


@pytest.mark.parametrize(
    ("names", "index"),
    [(["oncall", "oncall"], 1), (["secure-export"], 0), (["oncall", "Oncall"], 1)],
    ids=["two-emails", "webhook-name", "case-insensitive"],
)
def test_action_group_receiver_names_are_unique(tmp_path, names, index):
    receivers = [{"name": n, "emailAddress": f"{n}@example.org"} for n in names]
    problems = _problems(tmp_path, lambda c: c["secure-export:actionGroup"].update(emailReceivers=receivers))
    assert any(
        p.startswith(f"stacks/Pulumi.case.yaml: secure-export:actionGroup.emailReceivers[{index}].name: ")
        and "unique within the action group" in p
        for p in problems
    ), problems
    from secure_export.components import SecureWebhookActionGroup

    def program() -> None:
        SecureWebhookActionGroup(
            "ag",
            {
                "resource_group_name": "rg",
                "short_name": "sx",
                "receiver_base_url": "https://rx.example.net",
                "application_object_id": "app",
                "identifier_uri": "api://rx",
                "tenant_id": "0b6f4c1e-3d2a-4f5b-8c9d-7e6f5a4b3c2d",
                "email_receivers": [{"name": n, "email_address": "a@b.org"} for n in names],
            },
        )

    with pytest.raises(ValueError, match=rf"email_receivers\[{index}\].name: .*unique"):
        declare(program)


TENANT = "0b6f4c1e-3d2a-4f5b-8c9d-7e6f5a4b3c2d"


@pytest.mark.parametrize(
    ("uri", "accepted"),
    [
        (f"api://{TENANT}/secure-export-prod", True),
        (f"api://{TENANT}", True),
        (f"api://secure-export/{TENANT}", True),
        ("api://rx.platform.example.org/secure-export", True),
        ("https://platform.example.org/secure-export", True),
        ("https://secure-export.platform.example.org", True),
        ("api://secure-export-prod", False),
        ("api://secure-export-prod.platform.example.org", False),
        ("https://example.org", False),
    ],
)
def test_identifier_uri_restriction(uri, accepted):
    from secure_export.stack.deploy_rules import identifier_uri_has_tenant_identifier

    assert identifier_uri_has_tenant_identifier(uri) is accepted


def test_configured_identifier_uri_without_a_tenant_identifier_is_warned_about(tmp_path):
    (warning,) = _warnings(tmp_path, lambda c: c["secure-export:identity"].update(identifierUri="api://sx-dev"))
    assert warning.startswith("stacks/Pulumi.case.yaml: secure-export:identity.identifierUri: api://sx-dev ")
    assert "uriAdditionWithoutUniqueTenantIdentifier" in warning
    assert _warnings(tmp_path, lambda c: c["secure-export:identity"].update(identifierUri=f"api://{TENANT}/sx")) == []


REFUSED = {
    "mute-stateful": (_with_log(muteActionsDuration="PT30M"), "alertRules.log[0].muteActionsDuration"),
    "service-health-two-subscriptions": (
        _service_health([f"/subscriptions/{SUB}", f"/subscriptions/{SUB_2}"]),
        "alertRules.activityLog[0].scopes",
    ),
    "multi-resource-two-subscriptions": (
        _with_metric(_multi_metric([GATEWAY.format(sub=SUB, name="a"), GATEWAY.format(sub=SUB_2, name="b")])),
        "alertRules.metric[0].scopes",
    ),
    "periods-without-time-column": (
        _with_log(query=NO_TIME, timeAggregation="Total", metricMeasureColumn="Errors", failingPeriods=PERIODS),
        "alertRules.log[0].failingPeriods.evaluationPeriods",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_plan_exits_non_zero_naming_the_key_without_a_traceback(tmp_path, capsys, case):
    from secure_export.plan.cli import main

    change, key = REFUSED[case]
    (tmp_path / "stacks").mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        (tmp_path / name).write_text((REPO / name).read_text())
    _stack(tmp_path / "stacks", change).rename(tmp_path / "stacks" / "Pulumi.case.yaml")
    assert main(["--stack", "case", "--project-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"secure-export:{key}: " in err
    assert "Traceback" not in err


def test_action_group_email_limits(tmp_path):
    long_address = "a" * 60 + "@example.org"
    receivers = [{"name": "oncall", "emailAddress": long_address}]
    (problem,) = _problems(tmp_path, lambda c: c["secure-export:actionGroup"].update(emailReceivers=receivers))
    assert "secure-export:actionGroup.emailReceivers[0].emailAddress: has 72 characters" in problem
    many = [{"name": f"r{i}", "emailAddress": f"r{i}@example.org"} for i in range(1001)]
    problems = _problems(tmp_path, lambda c: c["secure-export:actionGroup"].update(emailReceivers=many))
    assert any("secure-export:actionGroup.emailReceivers: lists 1001 e-mail receivers" in p for p in problems)


def test_more_activity_log_rules_than_a_subscription_holds_are_refused(tmp_path):
    rules = [
        {"name": f"deleted-{i}", "category": "Administrative", "scopes": [f"/subscriptions/{SUB}"]} for i in range(101)
    ]
    (problem,) = _problems(tmp_path, lambda c: c["secure-export:alertRules"].update(activityLog=rules))
    assert "secure-export:alertRules.activityLog: declares 101 activity log rules" in problem
    snake = [{**r} for r in rules]
    with pytest.raises(ValueError, match="activity_log_alerts declares 101"):
        declare(_rules(activity_log_alerts=snake))


def test_every_documented_rule_names_a_key_and_a_source():
    rows = [
        line
        for line in (REPO / "docs" / "deploy-rules.md").read_text().splitlines()
        if line.startswith("| ") and not line.startswith(("| #", "| rule", "| ---"))
    ]
    assert len(rows) >= 19
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert "](" in cells[-1], row  # a link to the source
        assert "`" in row, row  # the key or field it applies to
