"""One line that says what fired: which metric crossed which threshold, which query matched, what happened."""

from __future__ import annotations

from typing import Any

from receiver.alerts.contexts import (
    ActivityLogContext,
    ContextView,
    CostBudgetContext,
    LogAnalyticsV1Context,
    LogQueryContext,
    LogQueryCriterion,
    MetricContext,
    MetricCriterion,
    PrometheusContext,
    SmartDetectorContext,
    context_view,
)
from receiver.alerts.schema import CommonAlert

SUMMARY_MAX_CHARS = 300


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _join(*parts: Any) -> str:
    return " ".join(_fmt(part) for part in parts if part not in (None, ""))


def condition_summary(alert: CommonAlert) -> str | None:
    """One line saying what fired: metric/operator/threshold/value, log query result, activity
    operation, budget spend…, chosen by the context's shape; None when nothing useful is known."""
    try:
        text = _summary(context_view(alert), alert.essentials.monitoring_service)
    except (TypeError, ValueError, AttributeError):  # a view with surprising contents: no summary
        return None
    if not text:
        return None
    text = " ".join(text.split())  # one line
    return text if len(text) <= SUMMARY_MAX_CHARS else text[: SUMMARY_MAX_CHARS - 1] + "…"


def _summary(view: ContextView | None, service: str | None) -> str | None:
    if isinstance(view, MetricContext):
        return "; ".join(_metric_criterion(criterion) for criterion in view.condition.all_of) or None
    if isinstance(view, LogQueryContext):
        return "; ".join(_log_criterion(criterion) for criterion in view.condition.all_of) or None
    if isinstance(view, LogAnalyticsV1Context):
        head = f"{view.alert_type}: " if view.alert_type else ""
        body = f"result count = {view.result_count}" if view.result_count is not None else "log search"
        rule = _join(view.operator, view.threshold)
        query = f" [query: {view.search_query}]" if view.search_query else ""
        return head + (f"{body}, {rule}" if rule else body) + query
    if isinstance(view, PrometheusContext):
        value = f" = {_fmt(view.expression_value)}" if view.expression_value is not None else ""
        return f"{view.expression}{value}"
    if isinstance(view, CostBudgetContext):
        data = view.alert_data
        forecast = data.threshold_type == "Forecasted" and data.forecasted_total is not None
        amount = data.forecasted_total if forecast else data.spent_amount
        budget = f"budget {data.budget_name}:" if data.budget_name else "budget:"
        return _join(budget, "forecast" if forecast else "spent", amount, "of", data.budget_threshold, data.unit)
    if isinstance(view, SmartDetectorContext):
        detected = f" (detected {view.detected_value}, normal {view.normal_value})" if view.detected_value else ""
        return view.detection_summary + detected
    if isinstance(view, ActivityLogContext):
        return _activity_summary(view, service)
    return None


def _metric_criterion(criterion: MetricCriterion) -> str:
    name = criterion.metric_name or "metric"
    if criterion.web_test_name:
        name = f"{criterion.web_test_name} {name}"
    measured = _join(name, f"({criterion.time_aggregation})" if criterion.time_aggregation else None)
    if criterion.metric_value is not None:
        measured += f" = {_fmt(criterion.metric_value)}"
    rule = _join(criterion.operator, criterion.threshold)
    if criterion.alert_sensitivity:
        rule = _join(rule, f"(dynamic, {criterion.alert_sensitivity} sensitivity)")
    return f"{measured}, {rule}" if rule else measured


def _log_criterion(criterion: LogQueryCriterion) -> str:
    measure = criterion.metric_measure_column or "result count"
    measured = _join(measure, f"({criterion.time_aggregation})" if criterion.time_aggregation else None)
    if criterion.metric_value is not None:
        measured += f" = {_fmt(criterion.metric_value)}"
    rule = _join(criterion.operator, criterion.threshold)
    query = f" [query: {criterion.search_query}]" if criterion.search_query else ""
    return (f"{measured}, {rule}" if rule else measured) + query


def _activity_summary(view: ActivityLogContext, service: str | None) -> str | None:
    props = view.properties or {}
    title = props.get("title") if isinstance(props.get("title"), str) else None
    normalized = (service or "").replace(" ", "").lower()
    if normalized == "resourcehealth" and title:
        previous, current = props.get("previousHealthStatus"), props.get("currentHealthStatus")
        change = f" ({previous} -> {current})" if previous or current else ""
        return f"{title}{change}"
    if normalized == "servicehealth" and title:
        incident = f"{props.get('incidentType')}:" if props.get("incidentType") else None
        stage = f"[{props.get('stage')}]" if props.get("stage") else None
        return _join(incident, title, stage)
    return _join(view.operation_name, view.status) or title
