"""Alert rules that watch the receiver itself, notifying its operators by e-mail.

They go to an action group of their own with e-mail receivers only: an alert about the receiver
must never travel through the receiver's own webhook. Four log search rules read the receiver's
JSON log lines in the environment's Log Analytics workspace (``ContainerAppConsoleLogs_CL``, whose
``Log_s`` column holds one line); one metric rule reads the platform's ``RestartCount``. The
queries are also listed in docs/operations.md.
"""

from typing import Any

import pulumi
from pulumi_azure_native import monitor

from secure_export.stack.validation import duration_seconds

_LINES = "ContainerAppConsoleLogs_CL\n| where ContainerAppName_s == '{app}'\n| extend e = parse_json(Log_s)\n"

QUERIES: dict[str, str] = {
    "parked": _LINES + "| where tostring(e.event) == 'dispatch_parked'",
    "paused": _LINES + "| where tostring(e.event) == 'dispatch_paused'",
    "refused-tokens": _LINES + "| where tostring(e.event) in ('auth_refused', 'subscription_refused')",
    "no-delivery": _LINES
    + "| where tostring(e.event) == 'dispatch_summary'\n"
    + "| summarize accepted = sum(toint(e.accepted)), applied = sum(toint(e.applied))\n"
    + "| where accepted > 0 and applied == 0",
}
"""The log search rules' KQL, ``{app}`` standing for the container app's name."""

_MIN_NO_DELIVERY_SECONDS = 15 * 60
_MAX_LOG_WINDOW_SECONDS = 2 * 86400
"""Log search alert windows reach at most two days (Azure Monitor scheduled query rules)."""


def watch_receiver(
    name: str,
    *,
    parent: pulumi.Resource,
    resource_group_name: pulumi.Input[str],
    location: str,
    app_name: str,
    container_app_id: pulumi.Input[str],
    workspace_id: pulumi.Input[str],
    operator_emails: list[str],
    no_delivery_window: str,
    refused_token_threshold: int,
    tags: dict[str, str] | None = None,
) -> None:
    """Declare the operators' action group and the five rules as children of ``parent``."""
    try:
        window = duration_seconds(no_delivery_window)
    except ValueError as error:
        raise ValueError(f"ReceiverService {name}: no_delivery_window {error}") from None
    if not _MIN_NO_DELIVERY_SECONDS <= window <= _MAX_LOG_WINDOW_SECONDS:
        raise ValueError(
            f"ReceiverService {name}: no_delivery_window must be between PT15M and P2D, got {no_delivery_window!r}"
        )
    if refused_token_threshold < 1:
        raise ValueError(f"ReceiverService {name}: refused_token_threshold must be at least 1")
    child = pulumi.ResourceOptions(parent=parent)
    operators = monitor.ActionGroup(
        f"{name}-operators",
        resource_group_name=resource_group_name,
        group_short_name="sx-ops",
        enabled=True,
        location="Global",
        email_receivers=[
            {"name": f"operator-{index}", "email_address": address, "use_common_alert_schema": True}
            for index, address in enumerate(operator_emails, start=1)
        ],
        tags=tags,
        opts=child,
    )
    rules: list[tuple[str, str, int, str, float, str]] = [
        # role, description, severity, window, threshold, query key
        (
            "parked",
            "deliveries were parked: they will not reach the ITSM tool without an operator "
            "('secure-export trace' / 'replay' / 'discard')",
            1,
            "PT5M",
            0,
            "parked",
        ),
        (
            "paused",
            "dispatching paused: the ITSM tool refuses the receiver's credentials or configuration; "
            "alerts wait in the inbox",
            1,
            "PT5M",
            0,
            "paused",
        ),
        (
            "refused-tokens",
            f"more than {refused_token_threshold} requests with a refused token or subscription within 5 minutes",
            2,
            "PT5M",
            refused_token_threshold,
            "refused-tokens",
        ),
        (
            "no-delivery",
            f"Azure sent alerts but none reached the ITSM tool within {no_delivery_window}",
            1,
            no_delivery_window,
            0,
            "no-delivery",
        ),
    ]
    for role, description, severity, rule_window, threshold, query in rules:
        monitor.ScheduledQueryRule(
            f"{name}-watch-{role}",
            rule_name=f"{app_name}-{role}",
            resource_group_name=resource_group_name,
            location=location,
            kind="LogAlert",
            description=f"secure-export receiver {app_name}: {description}",
            display_name=f"{app_name}: {role}",
            severity=severity,
            enabled=True,
            scopes=[workspace_id],
            evaluation_frequency="PT5M",
            window_size=rule_window,
            criteria=monitor.ScheduledQueryRuleCriteriaArgs(
                all_of=[
                    monitor.ConditionArgs(
                        query=QUERIES[query].format(app=app_name),
                        time_aggregation="Count",
                        operator="GreaterThan",
                        threshold=threshold,
                        failing_periods=monitor.ConditionFailingPeriodsArgs(
                            number_of_evaluation_periods=1, min_failing_periods_to_alert=1
                        ),
                    )
                ]
            ),
            auto_mitigate=True,
            actions=monitor.ActionsArgs(action_groups=[operators.id]),
            tags=tags,
            opts=child,
        )
    restarts: Any = monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
        odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
        all_of=[
            monitor.MetricCriteriaArgs(
                criterion_type="StaticThresholdCriterion",
                name="restarts",
                metric_name="RestartCount",
                metric_namespace="Microsoft.App/containerApps",
                time_aggregation="Total",
                operator="GreaterThan",
                threshold=0,
            )
        ],
    )
    monitor.MetricAlert(
        f"{name}-watch-restarts",
        rule_name=f"{app_name}-restarts",
        resource_group_name=resource_group_name,
        location="global",
        description=f"secure-export receiver {app_name}: a replica restarted (crash, failed liveness probe)",
        severity=2,
        enabled=True,
        scopes=[container_app_id],
        evaluation_frequency="PT5M",
        window_size="PT15M",
        criteria=restarts,
        auto_mitigate=True,
        actions=[monitor.MetricAlertActionArgs(action_group_id=operators.id)],
        tags=tags,
        opts=child,
    )
