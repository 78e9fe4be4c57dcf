"""Typed views of ``alertContext``, whose shape differs per monitoring service (the parts a ticket needs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, ValidationError

from receiver.alerts.schema import CommonAlert, OpenModel


class MetricCriterion(OpenModel):
    """One ``condition.allOf`` entry of a metric alert (static, dynamic or availability test)."""

    metric_name: str | None = Field(default=None, alias="metricName")
    metric_namespace: str | None = Field(default=None, alias="metricNamespace")
    operator: str | None = None
    threshold: str | float | None = None
    time_aggregation: str | None = Field(default=None, alias="timeAggregation")
    metric_value: float | str | None = Field(default=None, alias="metricValue")
    alert_sensitivity: str | None = Field(default=None, alias="alertSensitivity")
    web_test_name: str | None = Field(default=None, alias="webTestName")
    dimensions: list[Any] | None = None


class MetricCondition(OpenModel):
    """``alertContext.condition`` of a metric alert."""

    window_size: str | None = Field(default=None, alias="windowSize")
    all_of: list[MetricCriterion] = Field(default_factory=list, alias="allOf")


class MetricContext(OpenModel):
    """``alertContext`` of a Platform metric alert.

    ``conditionType`` ``*MetricCriteria``, ``DynamicThresholdCriteria`` or ``WebtestLocationAvailabilityCriteria``.
    """

    condition_type: str | None = Field(default=None, alias="conditionType")
    condition: MetricCondition


class LogQueryCriterion(OpenModel):
    """One ``condition.allOf`` entry of a log search alert (Log Alerts V2 / Simple Log Alert)."""

    search_query: str | None = Field(default=None, alias="searchQuery")
    metric_measure_column: str | None = Field(
        default=None, alias="metricMeasureColumn", validation_alias=AliasChoices("metricMeasureColumn", "metricMeasure")
    )
    operator: str | None = None
    threshold: str | float | None = None
    time_aggregation: str | None = Field(default=None, alias="timeAggregation")
    metric_value: float | str | None = Field(default=None, alias="metricValue")
    link_to_search_results_ui: str | None = Field(default=None, alias="linkToSearchResultsUI")


class LogQueryCondition(OpenModel):
    """``alertContext.condition`` of a log search alert."""

    window_size: str | None = Field(default=None, alias="windowSize")
    all_of: list[LogQueryCriterion] = Field(default_factory=list, alias="allOf")


class LogQueryContext(OpenModel):
    """``alertContext`` of a Log Alerts V2 / Simple Log Alert rule (``conditionType`` ``LogQueryCriteria``)."""

    condition_type: Literal["LogQueryCriteria"] = Field(alias="conditionType")
    condition: LogQueryCondition


class LogAnalyticsV1Context(OpenModel):
    """``alertContext`` of a legacy (API 2018-04-16) Log Analytics / Application Insights log alert."""

    search_query: str | None = Field(default=None, alias="SearchQuery")
    result_count: int | None = Field(default=None, alias="ResultCount")
    operator: str | None = Field(default=None, alias="Operator")
    threshold: float | str | None = Field(default=None, alias="Threshold")
    alert_type: str | None = Field(default=None, alias="AlertType")
    link_to_search_results: str | None = Field(default=None, alias="LinkToSearchResults")


class ActivityLogContext(OpenModel):
    """``alertContext`` of an activity-log alert (Administrative, Policy, Autoscale, Security,
    ServiceHealth, Resource Health): the activity-log event envelope."""

    operation_name: str | None = Field(default=None, alias="operationName")
    status: str | None = None
    caller: str | None = None
    level: str | int | None = None
    event_source: str | int | None = Field(default=None, alias="eventSource")
    event_timestamp: str | None = Field(default=None, alias="eventTimestamp")
    properties: dict[str, Any] | None = None


class PrometheusContext(OpenModel):
    """``alertContext`` of a Prometheus rule-group alert."""

    expression: str
    expression_value: str | float | None = Field(default=None, alias="expressionValue")
    labels: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None
    rule_group: str | None = Field(default=None, alias="ruleGroup")


class CostBudgetData(OpenModel):
    """``alertContext.AlertData`` of a budget alert."""

    budget_name: str | None = Field(default=None, alias="BudgetName")
    threshold_type: str | None = Field(default=None, alias="ThresholdType")
    budget_threshold: str | float | None = Field(default=None, alias="BudgetThreshold")
    spent_amount: str | float | None = Field(default=None, alias="SpentAmount")
    forecasted_total: str | float | None = Field(default=None, alias="ForecastedTotalForPeriod")
    unit: str | None = Field(default=None, alias="Unit")


class CostBudgetContext(OpenModel):
    """``alertContext`` of a CostAlerts (budget) alert."""

    alert_category: str | None = Field(default=None, alias="AlertCategory")
    alert_data: CostBudgetData = Field(alias="AlertData")


class SmartDetectorContext(OpenModel):
    """``alertContext`` of an Application Insights smart-detection alert."""

    detection_summary: str = Field(alias="DetectionSummary")
    detected_value: str | None = Field(default=None, alias="DetectedValue")
    normal_value: str | None = Field(default=None, alias="NormalValue")
    smart_detector_name: str | None = Field(default=None, alias="SmartDetectorName")


ContextView = (
    MetricContext
    | LogQueryContext
    | LogAnalyticsV1Context
    | ActivityLogContext
    | PrometheusContext
    | CostBudgetContext
    | SmartDetectorContext
)


def context_view(alert: CommonAlert) -> ContextView | None:
    """A typed view of ``alertContext``, chosen by its shape; None when no view fits.

    Shapes are recognised by their keys rather than by ``monitoringService`` alone, because the
    published labels vary (``Log Analytics`` vs ``Log Alerts V1 – Metric``, ``Resource Health`` vs
    ``ResourceHealth``). A context that does not fit its view is not an error: the alert was
    already accepted; it just gets no typed view.
    """
    context = alert.data.alert_context
    if not isinstance(context, dict):
        return None
    view: type[BaseModel] | None = None
    condition = context.get("condition")
    if isinstance(condition, dict) and isinstance(condition.get("allOf"), list):
        view = LogQueryContext if context.get("conditionType") == "LogQueryCriteria" else MetricContext
    elif "SearchQuery" in context or "ResultCount" in context:
        view = LogAnalyticsV1Context
    elif "expression" in context:
        view = PrometheusContext
    elif isinstance(context.get("AlertData"), dict):
        view = CostBudgetContext
    elif "DetectionSummary" in context:
        view = SmartDetectorContext
    elif "operationName" in context or "eventSource" in context:
        view = ActivityLogContext
    if view is None:
        return None
    try:
        return view.model_validate(context)  # type: ignore[return-value]  # view is one of ContextView's classes
    except ValidationError:
        return None
