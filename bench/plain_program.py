"""The comparison program: N ``MetricAlert`` resources declared directly, with no components.

Each rule has the same inputs the ``AlertRules`` component gives a generated rule (one static
criterion on one VM, auto-mitigating, wired to one action group), so the difference in cost between
this program and the component stack is what the components add.
"""

from __future__ import annotations

from collections.abc import Callable

SUBSCRIPTION = "00000000-0000-4000-8000-00000000b0b0"
RESOURCE_GROUP = "rg-bench"
ACTION_GROUP_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/microsoft.insights/actionGroups/ag-bench"
)


def vm_id(index: int) -> str:
    """Resource id of the ``index``-th watched virtual machine."""
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachines/vm-{index:05d}"


def plain_program(rules: int) -> Callable[[], None]:
    """A Pulumi program (a callable) declaring ``rules`` metric alerts directly."""

    def program() -> None:
        import pulumi
        from pulumi_azure_native import monitor

        ids = []
        for index in range(rules):
            name = f"cpu-high-{index:05d}"
            alert = monitor.MetricAlert(
                f"metric-{name}",
                rule_name=name,
                resource_group_name=RESOURCE_GROUP,
                location="global",
                description=f"CPU above 90% on vm-{index:05d}",
                severity=index % 5,
                enabled=True,
                scopes=[vm_id(index)],
                evaluation_frequency="PT1M",
                window_size="PT5M",
                criteria={
                    "odata_type": "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                    "all_of": [
                        {
                            "criterion_type": "StaticThresholdCriterion",
                            "name": "Percentage CPU",
                            "metric_name": "Percentage CPU",
                            "metric_namespace": "Microsoft.Compute/virtualMachines",
                            "operator": "GreaterThan",
                            "threshold": 90.0,
                            "time_aggregation": "Average",
                        }
                    ],
                },
                auto_mitigate=True,
                actions=[{"action_group_id": ACTION_GROUP_ID}],
            )
            ids.append(alert.id)
        pulumi.export("metric_alert_count", rules)

    return program
