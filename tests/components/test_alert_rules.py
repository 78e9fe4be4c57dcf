import pulumi
import pytest
from pulumi.runtime.sync_await import _sync_await

from secure_export.components import AlertRules
from secure_export.components.alert_rules import watched_subscriptions
from tests.support.plans import (
    ACTIVITY_ALERT,
    LOG_ALERT,
    METRIC_ALERT,
    SUB_A,
    SUB_B,
    VM,
    declare,
    log_rule,
    metric_rule,
    of_type,
    one,
)

AG = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Insights/actionGroups/ag"


def _rules(**args):
    def program():
        rules = AlertRules(
            "rules", {"resource_group_name": "rg", "action_group_id": AG, "location": "westeurope", **args}
        )
        pulumi.export("metricIds", rules.metric_alert_ids)
        pulumi.export("logIds", rules.log_alert_ids)
        pulumi.export("activityIds", rules.activity_log_alert_ids)

    return program


def test_static_single_resource_metric_rule_is_stateful_and_notifies_the_group():
    result = declare(_rules(metric_alerts=[metric_rule()]))
    alert = one(result, METRIC_ALERT)
    assert alert.inputs["autoMitigate"] is True
    assert alert.inputs["actions"] == [{"actionGroupId": AG}]
    assert alert.inputs["severity"] == 2
    assert alert.inputs["criteria"]["odataType"] == "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
    (criterion,) = alert.inputs["criteria"]["allOf"]
    assert criterion["criterionType"] == "StaticThresholdCriterion"
    assert criterion["threshold"] == 90
    assert alert.inputs["ruleName"] == "cpu-high"
    assert result.outputs["metricIds"] == [alert.outputs["id"]]


def test_ids_of_many_metric_rules_keep_their_order_and_dependencies():
    # More rules than one chunk of the combined id list, and a partial last chunk.
    count = 150
    captured = {}

    def program():
        rules = AlertRules(
            "rules",
            {
                "resource_group_name": "rg",
                "action_group_id": AG,
                "metric_alerts": [metric_rule(name=f"cpu-{i:03d}") for i in range(count)],
            },
        )
        captured["ids"] = rules.metric_alert_ids
        pulumi.export("metricIds", rules.metric_alert_ids)

    result = declare(program)
    ids = {alert.name: alert.outputs["id"] for alert in of_type(result, METRIC_ALERT)}
    assert result.outputs["metricIds"] == [ids[f"rules-metric-cpu-{i:03d}"] for i in range(count)]
    dependencies = _sync_await(captured["ids"].resources())
    assert {resource._name for resource in dependencies} == set(ids)


def test_dynamic_multi_resource_metric_rule():
    rule = metric_rule(
        scopes=[f"/subscriptions/{SUB_A}/resourceGroups/rg-app"],
        target_resource_type="Microsoft.Compute/virtualMachines",
        target_resource_region="westeurope",
        criteria=[
            {
                "metric_name": "Percentage CPU",
                "time_aggregation": "Average",
                "operator": "GreaterOrLessThan",
                "dynamic": {"sensitivity": "High", "evaluation_periods": 4, "min_failing_periods": 3},
                "dimensions": [{"name": "VMName", "operator": "Include", "values": ["*"]}],
            }
        ],
    )
    alert = one(declare(_rules(metric_alerts=[rule])), METRIC_ALERT)
    assert alert.inputs["autoMitigate"] is True
    assert alert.inputs["criteria"]["odataType"] == "Microsoft.Azure.Monitor.MultipleResourceMultipleMetricCriteria"
    (criterion,) = alert.inputs["criteria"]["allOf"]
    assert criterion["criterionType"] == "DynamicThresholdCriterion"
    assert criterion["alertSensitivity"] == "High"
    assert criterion["failingPeriods"] == {"numberOfEvaluationPeriods": 4, "minFailingPeriodsToAlert": 3}
    assert criterion["dimensions"] == [{"name": "VMName", "operator": "Include", "values": ["*"]}]
    assert alert.inputs["targetResourceType"] == "Microsoft.Compute/virtualMachines"


def test_multi_resource_rule_needs_a_target_type_and_region():
    with pytest.raises(ValueError, match="target_resource_type and target_resource_region"):
        declare(_rules(metric_alerts=[metric_rule(scopes=[VM, VM + "2"])]))


def test_log_rule_is_stateful_with_dimensions_and_failing_periods():
    result = declare(_rules(log_alerts=[log_rule()]))
    alert = one(result, LOG_ALERT)
    assert alert.inputs["autoMitigate"] is True
    assert alert.inputs["kind"] == "LogAlert"
    assert alert.inputs["actions"] == {"actionGroups": [AG]}
    assert alert.inputs["location"] == "westeurope"
    (condition,) = alert.inputs["criteria"]["allOf"]
    assert condition["dimensions"] == [{"name": "AppRoleName", "operator": "Include", "values": ["*"]}]
    assert condition["failingPeriods"] == {"numberOfEvaluationPeriods": 2, "minFailingPeriodsToAlert": 2}
    assert condition["resourceIdColumn"] == "_ResourceId"
    assert result.outputs["logIds"] == [alert.outputs["id"]]


def test_activity_log_rules_cover_administrative_service_health_and_resource_health():
    rules = [
        {
            "name": "vm-deleted",
            "category": "Administrative",
            "operation_name": "Microsoft.Compute/virtualMachines/delete",
            "scopes": [f"/subscriptions/{SUB_A}"],
        },
        {
            "name": "health",
            "category": "ServiceHealth",
            "incident_types": ["Incident"],
            "regions": ["West Europe"],
            "scopes": [f"/subscriptions/{SUB_A}"],
        },
        {"name": "res-health", "category": "ResourceHealth", "health_statuses": ["Unavailable"], "scopes": [VM]},
    ]
    result = declare(_rules(activity_log_alerts=rules))
    alerts = {a.inputs["activityLogAlertName"]: a for a in of_type(result, ACTIVITY_ALERT)}
    assert set(alerts) == {"vm-deleted", "health", "res-health"}
    for alert in alerts.values():
        assert alert.inputs["actions"] == {"actionGroups": [{"actionGroupId": AG}]}
        assert alert.inputs["location"] == "Global"
    admin = alerts["vm-deleted"].inputs["condition"]["allOf"]
    assert {"field": "category", "equals": "Administrative"} in admin
    assert {"field": "operationName", "equals": "Microsoft.Compute/virtualMachines/delete"} in admin
    health = alerts["health"].inputs["condition"]["allOf"]
    assert {"field": "category", "equals": "ServiceHealth"} in health
    assert {"anyOf": [{"field": "properties.incidentType", "equals": "Incident"}]} in health
    assert {
        "field": "properties.impactedServices[*].ImpactedRegions[*].RegionName",
        "containsAny": ["West Europe"],
    } in health
    resource = alerts["res-health"].inputs["condition"]["allOf"]
    # The recovery status is added, so the receiver learns that the resource is back and resolves the item.
    assert {
        "anyOf": [
            {"field": "properties.currentHealthStatus", "equals": "Unavailable"},
            {"field": "properties.currentHealthStatus", "equals": "Available"},
        ]
    } in resource


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"severity": 9}, "severity must be 0..4, got 9"),
        ({"severity": -1}, "severity must be 0..4"),
        ({"evaluation_frequency": "5 minutes"}, "evaluation_frequency must be an ISO-8601 duration"),
        ({"window_size": "PT"}, "window_size must be an ISO-8601 duration"),
        ({"evaluation_frequency": "PT15M", "window_size": "PT5M"}, "longer than the window"),
        ({"scopes": []}, "scopes must list at least one"),
        ({"scopes": ["vm1"]}, "must be Azure resource ids"),
    ],
)
def test_metric_rule_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        declare(_rules(metric_alerts=[metric_rule(**overrides)]))


def test_log_rule_validation_and_duplicate_names():
    with pytest.raises(ValueError, match="severity must be 0..4, got 7"):
        declare(_rules(log_alerts=[log_rule(severity=7)]))
    with pytest.raises(ValueError, match="used twice"):
        declare(_rules(metric_alerts=[metric_rule(), metric_rule()]))


def test_watched_subscriptions_come_from_every_rules_scopes():
    assert watched_subscriptions([metric_rule()], [log_rule()], [{"scopes": [f"/subscriptions/{SUB_A}"]}]) == sorted(
        [SUB_A, SUB_B]
    )
    assert watched_subscriptions() == []
