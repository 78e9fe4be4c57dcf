"""Run a Pulumi program under fresh mocks and look at what it declared: the component and stack tests' helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from secure_export.plan.offline import PlannedResource, PlanResult, run_program

AZNS = "461e8683-5575-4561-ac7f-899cc907d62a"
APPLICATION = "azuread:index/application:Application"
SERVICE_PRINCIPAL = "azuread:index/servicePrincipal:ServicePrincipal"
APP_ROLE_ASSIGNMENT = "azuread:index/appRoleAssignment:AppRoleAssignment"
ACTION_GROUP = "azure-native:monitor:ActionGroup"
METRIC_ALERT = "azure-native:monitor:MetricAlert"
LOG_ALERT = "azure-native:monitor:ScheduledQueryRule"
ACTIVITY_ALERT = "azure-native:monitor:ActivityLogAlert"
CONTAINER_APP = "azure-native:app:ContainerApp"
SUB_A = "11111111-1111-4111-8111-111111111111"
SUB_B = "22222222-2222-4222-8222-222222222222"
VM = f"/subscriptions/{SUB_A}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/vm1"
WORKSPACE = f"/subscriptions/{SUB_B}/resourceGroups/rg-mon/providers/Microsoft.OperationalInsights/workspaces/law1"


def declare(program: Callable[[], Any], stack: str = "test", project: str = "secure-export") -> PlanResult:
    """Run ``program`` under fresh mocks (preview=False) and return what it declared."""
    return run_program(program, stack=stack, project=project)


def of_type(result: PlanResult, typ: str) -> list[PlannedResource]:
    """Return the declared resources of one type."""
    return [r for r in result.resources if r.type == typ]


def one(result: PlanResult, typ: str, name: str | None = None) -> PlannedResource:
    """Return the single declared resource of a type (and name), failing if there are several."""
    found = [r for r in of_type(result, typ) if name is None or r.name == name]
    assert len(found) == 1, f"expected one {typ} {name or ''}, found {[r.name for r in found]}"
    return found[0]


def metric_rule(**overrides: Any) -> dict[str, Any]:
    """A valid single-resource static metric rule, with overrides."""
    rule: dict[str, Any] = {
        "name": "cpu-high",
        "severity": 2,
        "scopes": [VM],
        "evaluation_frequency": "PT1M",
        "window_size": "PT5M",
        "criteria": [
            {"metric_name": "Percentage CPU", "time_aggregation": "Average", "operator": "GreaterThan", "threshold": 90}
        ],
    }
    rule.update(overrides)
    return rule


def log_rule(**overrides: Any) -> dict[str, Any]:
    """A valid log search rule with a dimension and failing periods, with overrides."""
    rule: dict[str, Any] = {
        "name": "errors",
        "severity": 1,
        "scopes": [WORKSPACE],
        "evaluation_frequency": "PT5M",
        "window_size": "PT15M",
        "query": (
            "AppRequests | where ResultCode startswith '5'"
            " | summarize Errors = count() by bin(TimeGenerated, 15m), _ResourceId, AppRoleName"
        ),
        "time_aggregation": "Total",
        "metric_measure_column": "Errors",
        "resource_id_column": "_ResourceId",
        "operator": "GreaterThan",
        "threshold": 20,
        "dimensions": [{"name": "AppRoleName", "operator": "Include", "values": ["*"]}],
        "failing_periods": {"evaluation_periods": 2, "min_failing_periods": 2},
    }
    rule.update(overrides)
    return rule
