"""The demo's alerts: one of each kind Azure Monitor sends, Fired and Resolved, and the demo's routing file."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DEMO_SUBSCRIPTION_ID = "5f1c3a2e-7b4d-4c2a-9e1f-0a6b8c9d1e2f"
"""Made-up subscription the demo's resources live in."""


@dataclass(frozen=True, slots=True)
class DemoAlert:
    """One alert instance of the demo: its Fired payload and, when Azure sends one, its Resolved."""

    kind: str
    """What a person calls it, e.g. ``metric alert (static threshold)``."""
    fired: dict[str, Any]
    resolved: dict[str, Any] | None
    """``None`` for activity-log alerts: Azure sends no Resolved for them."""

    @property
    def alert_id(self) -> str:
        """``essentials.alertId``, shared by the Fired and the Resolved."""
        return str(self.fired["data"]["essentials"]["alertId"])

    @property
    def rule(self) -> str:
        """``essentials.alertRule``."""
        return str(self.fired["data"]["essentials"]["alertRule"])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _resource(subscription: str, group: str, provider: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{provider}/{name}"


def _payload(
    subscription: str,
    instance: str,
    *,
    rule: str,
    severity: str,
    signal_type: str,
    service: str,
    targets: list[str],
    configuration_items: list[str],
    fired_at: datetime,
    description: str,
    alert_context: dict[str, Any],
) -> dict[str, Any]:
    essentials: dict[str, Any] = {
        "alertId": f"/subscriptions/{subscription}/providers/Microsoft.AlertsManagement/alerts/{instance}",
        "alertRule": rule,
        "severity": severity,
        "signalType": signal_type,
        "monitorCondition": "Fired",
        "monitoringService": service,
        "alertTargetIDs": targets,
        "configurationItems": configuration_items,
        "originAlertId": f"{subscription}_{rule}_{instance[:8]}",
        "firedDateTime": _iso(fired_at),
        "description": description,
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"essentials": essentials, "alertContext": alert_context},
    }


def _resolved(fired: dict[str, Any], resolved_at: datetime) -> dict[str, Any]:
    """The Resolved Azure sends for a stateful alert: same alertId, condition and resolve time."""
    resolved = copy.deepcopy(fired)
    essentials = resolved["data"]["essentials"]
    essentials["monitorCondition"] = "Resolved"
    essentials["resolvedDateTime"] = _iso(resolved_at)
    return resolved


def demo_alerts(now: datetime | None = None, subscription: str = DEMO_SUBSCRIPTION_ID) -> list[DemoAlert]:
    """The demo's alert instances, timed as if they fired during the last half hour.

    Every call gets fresh alert instance ids (as Azure gives each firing a new ``alertId``), so
    running the demo twice against one kept database adds new work items instead of replays.
    """
    now = now or datetime.now(UTC)
    vm = _resource(subscription, "rg-shop-prod", "Microsoft.Compute/virtualMachines", "vm-web-01")
    vm2 = _resource(subscription, "rg-shop-prod", "Microsoft.Compute/virtualMachines", "vm-web-02")
    batch_vm = _resource(subscription, "rg-batch", "Microsoft.Compute/virtualMachines", "vm-batch-07")
    storage = _resource(subscription, "rg-shop-prod", "Microsoft.Storage/storageAccounts", "stshopdata")
    workspace = _resource(subscription, "rg-shop-ops", "Microsoft.OperationalInsights/workspaces", "log-shop-prod")

    metric_at = now - timedelta(minutes=28)
    metric = _payload(
        subscription,
        str(uuid.uuid4()),
        rule="vm-cpu-high",
        severity="Sev2",
        signal_type="Metric",
        service="Platform",
        targets=[vm],
        configuration_items=["vm-web-01"],
        fired_at=metric_at,
        description="Average CPU above 80% for 5 minutes",
        alert_context={
            "properties": None,
            "conditionType": "SingleResourceMultipleMetricCriteria",
            "condition": {
                "windowSize": "PT5M",
                "allOf": [
                    {
                        "metricName": "Percentage CPU",
                        "metricNamespace": "Microsoft.Compute/virtualMachines",
                        "operator": "GreaterThan",
                        "threshold": "80",
                        "timeAggregation": "Average",
                        "dimensions": [{"name": "ResourceId", "value": "7d5c1b2a-0f3e-4c6d-8a9b-1e2f3a4b5c6d"}],
                        "metricValue": 93.4,
                    }
                ],
                "windowStartTime": _iso(metric_at - timedelta(minutes=5)),
                "windowEndTime": _iso(metric_at),
            },
        },
    )

    log_at = now - timedelta(minutes=24)
    log_search = _payload(
        subscription,
        str(uuid.uuid4()),
        rule="checkout-http-5xx",
        severity="Sev1",
        signal_type="Log",
        service="Log Alerts V2",
        targets=[workspace],
        configuration_items=["vm-web-01", "vm-web-02"],
        fired_at=log_at,
        description="More than 50 HTTP 5xx answers from the checkout service in 10 minutes",
        alert_context={
            "properties": {"team": "shop"},
            "conditionType": "LogQueryCriteria",
            "condition": {
                "windowSize": "PT10M",
                "allOf": [
                    {
                        "searchQuery": "AppRequests | where ResultCode startswith '5' | summarize count() by Computer",
                        "metricMeasureColumn": None,
                        "targetResourceTypes": "['Microsoft.OperationalInsights/workspaces']",
                        "operator": "GreaterThan",
                        "threshold": "50",
                        "timeAggregation": "Count",
                        "dimensions": [{"name": "Computer", "value": "vm-web-01"}],
                        "metricValue": 182.0,
                        "failingPeriods": {"numberOfEvaluationPeriods": 1, "minFailingPeriodsToAlert": 1},
                    }
                ],
                "windowStartTime": _iso(log_at - timedelta(minutes=10)),
                "windowEndTime": _iso(log_at),
            },
        },
    )

    dynamic_at = now - timedelta(minutes=20)
    dynamic = _payload(
        subscription,
        str(uuid.uuid4()),
        rule="storage-transactions-anomaly",
        severity="Sev3",
        signal_type="Metric",
        service="Platform",
        targets=[storage],
        configuration_items=["stshopdata"],
        fired_at=dynamic_at,
        description="Storage transactions outside the learned band",
        alert_context={
            "properties": None,
            "conditionType": "DynamicThresholdCriteria",
            "condition": {
                "windowSize": "PT15M",
                "allOf": [
                    {
                        "alertSensitivity": "Medium",
                        "failingPeriods": {"numberOfEvaluationPeriods": 4, "minFailingPeriodsToAlert": 4},
                        "ignoreDataBefore": None,
                        "metricName": "Transactions",
                        "metricNamespace": "Microsoft.Storage/storageAccounts",
                        "operator": "GreaterThan",
                        "threshold": "3045.3",
                        "timeAggregation": "Total",
                        "dimensions": [],
                        "metricValue": 7811.0,
                    }
                ],
                "windowStartTime": _iso(dynamic_at - timedelta(minutes=15)),
                "windowEndTime": _iso(dynamic_at),
            },
        },
    )

    admin = _payload(
        subscription,
        str(uuid.uuid4()),
        rule="vm-deleted",
        severity="Sev4",
        signal_type="Activity Log",
        service="Activity Log - Administrative",
        targets=[batch_vm],
        configuration_items=["vm-batch-07"],
        fired_at=now - timedelta(minutes=15),
        description="A virtual machine was deleted",
        alert_context={
            "authorization": {"action": "Microsoft.Compute/virtualMachines/delete", "scope": batch_vm},
            "channels": "Operation",
            "caller": "ops-automation@contoso.example",
            "correlationId": "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e",
            "eventSource": "Administrative",
            "eventTimestamp": _iso(now - timedelta(minutes=15)),
            "eventDataId": "6c7d8e9f-0a1b-4c2d-9e3f-4a5b6c7d8e9f",
            "level": "Informational",
            "operationName": "Microsoft.Compute/virtualMachines/delete",
            "operationId": "7d8e9f0a-1b2c-4d3e-8f4a-5b6c7d8e9f0a",
            "status": "Succeeded",
            "subStatus": "",
            "submissionTimestamp": _iso(now - timedelta(minutes=15)),
        },
    )

    health_at = now - timedelta(minutes=12)
    resource_health = _payload(
        subscription,
        str(uuid.uuid4()),
        rule="vm-unavailable",
        severity="Sev1",
        signal_type="Activity Log",
        service="Resource Health",
        targets=[vm2],
        configuration_items=["vm-web-02"],
        fired_at=health_at,
        description="A production VM became unavailable",
        alert_context={
            "channels": "Admin, Operation",
            "correlationId": "8e9f0a1b-2c3d-4e4f-9a5b-6c7d8e9f0a1b",
            "eventSource": "ResourceHealth",
            "eventTimestamp": _iso(health_at),
            "eventDataId": "9f0a1b2c-3d4e-4f5a-8b6c-7d8e9f0a1b2c",
            "level": "Critical",
            "operationName": "Microsoft.Resourcehealth/healthevent/Activated/action",
            "operationId": "0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d",
            "properties": {
                "title": "Virtual machine unexpectedly rebooted",
                "details": None,
                "currentHealthStatus": "Unavailable",
                "previousHealthStatus": "Available",
                "type": "Downtime",
                "cause": "PlatformInitiated",
            },
            "status": "Active",
            "submissionTimestamp": _iso(health_at),
        },
    )

    service_at = now - timedelta(minutes=8)
    service_health = _payload(
        subscription,
        str(uuid.uuid4()),
        rule="service-health-west-europe",
        severity="Sev3",
        signal_type="Activity Log",
        service="ServiceHealth",
        targets=[f"/subscriptions/{subscription}"],
        configuration_items=[],
        fired_at=service_at,
        description="Azure service issue affecting our region",
        alert_context={
            "authorization": None,
            "channels": 1,
            "claims": None,
            "caller": None,
            "correlationId": "1b2c3d4e-5f6a-4b7c-8d8e-9f0a1b2c3d4e",
            "eventSource": 2,
            "eventTimestamp": _iso(service_at),
            "httpRequest": None,
            "eventDataId": "2c3d4e5f-6a7b-4c8d-9e9f-0a1b2c3d4e5f",
            "level": 3,
            "operationName": "Microsoft.ServiceHealth/incident/action",
            "operationId": "1b2c3d4e-5f6a-4b7c-8d8e-9f0a1b2c3d4e",
            "properties": {
                "title": "Degraded performance: Storage - West Europe",
                "service": "Storage",
                "region": "West Europe",
                "communication": "<p>Engineers are investigating elevated latency for Storage in West Europe.</p>",
                "incidentType": "Incident",
                "trackingId": "DEMO-0001",
                "impactStartTime": _iso(service_at - timedelta(minutes=20)),
                "impactedServices": '[{"ImpactedRegions":[{"RegionName":"West Europe"}],"ServiceName":"Storage"}]',
                "defaultLanguageTitle": "Degraded performance: Storage - West Europe",
                "stage": "Active",
                "communicationId": "11000011223344",
                "isHIR": "false",
                "IsSynthetic": "False",
                "impactType": "SubscriptionList",
                "version": "0.1.1",
            },
            "status": "Active",
            "subStatus": None,
            "submissionTimestamp": _iso(service_at),
        },
    )

    return [
        DemoAlert("metric alert (static threshold)", metric, _resolved(metric, now - timedelta(minutes=9))),
        DemoAlert("log search alert (Log Alerts V2)", log_search, _resolved(log_search, now - timedelta(minutes=6))),
        DemoAlert("metric alert (dynamic threshold)", dynamic, _resolved(dynamic, now - timedelta(minutes=4))),
        DemoAlert("activity log alert (administrative)", admin, None),
        DemoAlert("resource health alert", resource_health, None),
        DemoAlert("service health alert", service_health, None),
    ]


DEMO_ROUTING = """\
# The demo's routing file (docs/routing.md): first match wins.
routes:
  - match: {monitoringService: [ServiceHealth]}
    set: {assignmentGroup: Cloud Platform Team, category: Cloud Provider}
  - match: {signalType: [Activity Log]}
    set: {assignmentGroup: Platform Team}
  - match: {resourceGroup: [rg-shop-prod]}
    set: {assignmentGroup: Shop On-Call, category: Software}
default: {assignmentGroup: Azure Monitor Triage}
"""


def refire(alert: DemoAlert, after_resolved: timedelta = timedelta(minutes=3)) -> DemoAlert:
    """A new instance of ``alert``'s rule on the same resources, firing ``after_resolved`` after it resolved.

    Azure gives every firing a new ``alertId``; within the reopen window the receiver brings the
    earlier work item back instead of opening another.
    """
    assert alert.resolved is not None, "only a stateful alert resolves and fires again"
    fired = copy.deepcopy(alert.fired)
    essentials = fired["data"]["essentials"]
    resolved_at = datetime.fromisoformat(
        alert.resolved["data"]["essentials"]["resolvedDateTime"].replace("Z", "+00:00")
    )
    prefix = essentials["alertId"].rsplit("/", 1)[0]
    essentials["alertId"] = f"{prefix}/{uuid.uuid4()}"
    essentials["firedDateTime"] = _iso(resolved_at + after_resolved)
    return DemoAlert(f"{alert.kind}, firing again", fired, _resolved(fired, resolved_at + 2 * after_resolved))
