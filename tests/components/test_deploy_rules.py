"""Deploy-time rules (components/deploy_rules.py): what Azure refuses is refused at plan time, naming the key."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from components import AlertRules
from components.config import ConfigError, load_stack_file
from tests.components.support import LOG_ALERT, declare, log_rule, one

REPO = Path(__file__).resolve().parents[2]
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
    return load_stack_file(_stack(tmp_path, change), display="stacks/Pulumi.case.yaml").warnings


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
