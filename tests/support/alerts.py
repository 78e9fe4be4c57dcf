"""Alert bodies for tests: a valid common-schema metric alert, varied by number, condition, rule and target."""

from __future__ import annotations

import copy
from typing import Any

SUBSCRIPTION = "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"


_BASE_ALERT: dict[str, Any] = {
    "schemaId": "azureMonitorCommonAlertSchema",
    "data": {
        "essentials": {
            "alertId": (
                f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/"
                "00000000-0000-0000-0000-000000000001"
            ),
            "alertRule": "cpu-high",
            "severity": "Sev2",
            "signalType": "Metric",
            "monitorCondition": "Fired",
            "monitoringService": "Platform",
            "alertTargetIDs": [
                f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-app/providers/microsoft.compute/virtualmachines/vm-app-01"
            ],
            "configurationItems": ["vm-app-01"],
            "originAlertId": f"{SUBSCRIPTION}_rg-app_microsoft.insights_metricAlerts_cpu-high_1",
            "firedDateTime": "2026-11-26T06:00:00.1234567Z",
            "description": "CPU above 90%",
            "essentialsVersion": "1.0",
            "alertContextVersion": "1.0",
        },
        "alertContext": {
            "properties": None,
            "conditionType": "SingleResourceMultipleMetricCriteria",
            "condition": {
                "windowSize": "PT5M",
                "allOf": [
                    {
                        "metricName": "Percentage CPU",
                        "metricNamespace": "Microsoft.Compute/virtualMachines",
                        "operator": "GreaterThan",
                        "threshold": "90",
                        "timeAggregation": "Average",
                        "dimensions": [],
                        "metricValue": 97.5,
                    }
                ],
            },
        },
        "customProperties": None,
    },
}


def alert_body(
    n: int | str = 1,
    condition: str = "Fired",
    *,
    subscription: str = SUBSCRIPTION,
    rule: str = "cpu-high",
    target: str = "vm-app-01",
) -> dict[str, Any]:
    """A valid common-schema metric alert; ``n`` makes the alert id unique."""
    body = copy.deepcopy(_BASE_ALERT)
    essentials = body["data"]["essentials"]
    essentials["alertId"] = f"/subscriptions/{subscription}/providers/Microsoft.AlertsManagement/alerts/test-{n}"
    essentials["monitorCondition"] = condition
    essentials["alertRule"] = rule
    essentials["alertTargetIDs"] = [
        f"/subscriptions/{subscription}/resourcegroups/rg-app/providers/microsoft.compute/virtualmachines/{target}"
    ]
    essentials["configurationItems"] = [target]
    if condition == "Resolved":
        essentials["resolvedDateTime"] = "2026-11-26T06:10:00Z"
    return body
