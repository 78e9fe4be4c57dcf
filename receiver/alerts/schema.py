"""The Azure Monitor common alert schema: pydantic models and the one place request bodies are parsed.

:func:`parse_alert` turns a request body into a :class:`CommonAlert` or raises
:class:`AlertParseError` with the status the receiver answers (DESIGN.md, "HTTP"):

* 400 ``invalid_json`` — not UTF-8, not JSON, nesting deeper than :data:`MAX_DEPTH`, a number
  beyond Python's integer-digit limit or outside the float range, or a top level that is not an
  object;
* 422 ``not_common_alert_schema`` — JSON, but ``schemaId`` is not ``azureMonitorCommonAlertSchema``,
  ``data.essentials`` lacks ``alertId`` or ``monitorCondition`` (``Fired``/``Resolved``), or a known
  field has the wrong type; the detail names the field.

Types follow Microsoft's documentation *and* its published payloads (the conformance corpus in
``shared/samples/common-alert-schema``): every essentials field except ``alertId`` and
``monitorCondition`` may be missing or null (cost alerts send no severity, signal type or rule;
service-health samples send no configuration items), timestamps may carry seven fractional digits
or no zone (read as UTC). Unknown fields and unknown monitoring services are kept, never rejected:
they stay on the models (``model_extra``) and in :attr:`CommonAlert.raw`.

``alertContext`` differs per monitoring service; :func:`context_view` gives a typed view of the
shapes that matter to an ITSM ticket and :func:`condition_summary` one line describing what fired.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

__all__ = [
    "COMMON_ALERT_SCHEMA_ID",
    "MAX_DEPTH",
    "ActivityLogContext",
    "AlertData",
    "AlertParseError",
    "CommonAlert",
    "CostBudgetContext",
    "Essentials",
    "LogAnalyticsV1Context",
    "LogQueryContext",
    "MetricContext",
    "PrometheusContext",
    "SmartDetectorContext",
    "condition_summary",
    "context_view",
    "parse_alert",
]

COMMON_ALERT_SCHEMA_ID = "azureMonitorCommonAlertSchema"

MAX_DEPTH = 64
"""Deepest nesting of objects/arrays accepted. Real payloads nest about 8 levels."""

SUMMARY_MAX_CHARS = 300

Severity = Literal["Sev0", "Sev1", "Sev2", "Sev3", "Sev4"]


class AlertParseError(Exception):
    """A body that is not a common-schema alert: 400 (``invalid_json``) or 422 (``not_common_alert_schema``)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail

    def to_json(self) -> dict[str, str]:
        """The JSON error body of DESIGN.md: ``{"error": code, "detail": detail}``."""
        return {"error": self.code, "detail": self.detail}


def _invalid_json(detail: str) -> AlertParseError:
    return AlertParseError(400, "invalid_json", detail)


def _not_common_schema(detail: str) -> AlertParseError:
    return AlertParseError(422, "not_common_alert_schema", detail)


# -- models ----------------------------------------------------------------------------------


class _Open(BaseModel):
    """Base of every model here: unknown fields are kept, never rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=False)


def _timestamp(value: Any) -> Any:
    """Accept ISO-8601 strings only (no epoch numbers); blank means absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 date-time string")
    if not value.strip():
        return None
    return value


def _as_utc(value: datetime | None) -> datetime | None:
    """Azure means UTC; one published sample omits the ``Z``."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Essentials(_Open):
    """``data.essentials``: the fields every common-schema alert shares."""

    alert_id: str = Field(alias="alertId", min_length=1)
    alert_rule: str | None = Field(default=None, alias="alertRule")
    severity: Severity | None = None
    signal_type: str | None = Field(default=None, alias="signalType")
    monitor_condition: Literal["Fired", "Resolved"] = Field(alias="monitorCondition")
    monitoring_service: str | None = Field(default=None, alias="monitoringService")
    alert_target_ids: list[str] | None = Field(default=None, alias="alertTargetIDs")
    configuration_items: list[str] | None = Field(default=None, alias="configurationItems")
    origin_alert_id: str | None = Field(default=None, alias="originAlertId")
    fired_date_time: datetime | None = Field(default=None, alias="firedDateTime")
    resolved_date_time: datetime | None = Field(default=None, alias="resolvedDateTime")
    description: str | None = None
    essentials_version: str | None = Field(default=None, alias="essentialsVersion")
    alert_context_version: str | None = Field(default=None, alias="alertContextVersion")
    # The documentation spells it alertRuleID, its own sample alertRuleId.
    alert_rule_id: str | None = Field(
        default=None, alias="alertRuleID", validation_alias=AliasChoices("alertRuleID", "alertRuleId")
    )
    investigation_link: str | None = Field(default=None, alias="investigationLink")
    intended_resource: str | None = Field(default=None, alias="intendedResource")
    target_resource: str | None = Field(default=None, alias="targetResource")
    target_resource_group: str | None = Field(default=None, alias="targetResourceGroup")
    target_resource_type: str | None = Field(default=None, alias="targetResourceType")

    _check_timestamps = field_validator("fired_date_time", "resolved_date_time", mode="before")(_timestamp)
    _utc = field_validator("fired_date_time", "resolved_date_time", mode="after")(_as_utc)


class AlertData(_Open):
    """``data``: essentials, the per-service ``alertContext`` and the rule's ``customProperties``."""

    essentials: Essentials
    alert_context: dict[str, Any] | None = Field(default=None, alias="alertContext")
    custom_properties: dict[str, Any] | None = Field(default=None, alias="customProperties")


class CommonAlert(_Open):
    """A whole common-schema alert. :attr:`raw` is the JSON object as received, for durable storage."""

    schema_id: Literal["azureMonitorCommonAlertSchema"] = Field(alias="schemaId")
    data: AlertData
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def raw(self) -> dict[str, Any]:
        """The parsed JSON object exactly as received (unknown fields included)."""
        return self._raw

    @property
    def essentials(self) -> Essentials:
        """Shortcut for ``data.essentials``."""
        return self.data.essentials

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> CommonAlert:
        """Validate an already parsed JSON object (raises :class:`AlertParseError` 422)."""
        if not isinstance(obj, dict):
            raise _not_common_schema(f"the JSON body must be an object, not {_json_kind(obj)}")
        try:
            alert = cls.model_validate(obj)
        except ValidationError as error:
            raise _not_common_schema(_describe(error)) from None
        alert._raw = obj
        return alert


# -- parsing -----------------------------------------------------------------------------------


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _too_deep(obj: Any) -> bool:
    """True when objects/arrays nest deeper than MAX_DEPTH (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, dict | list))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return False


def _loads(body: bytes) -> Any:
    """The JSON value of ``body``, exactly as :func:`json.loads` with this module's hooks reads it.

    orjson (C, ~2.5x faster than the standard library on alert bodies) reads every body it
    accepts to the same value, with one exception: an integer beyond 64 bits becomes a float
    (such numbers appear in no Azure payload and only ever in fields nothing reads). Whatever
    orjson refuses (not UTF-8, lone surrogates, a BOM, NaN/Infinity, floats out of range,
    nesting past 1024 levels, ...) is read again by the standard library, so every 400 keeps
    the reason and wording it had.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid_json("the body is not UTF-8 text") from None
    try:
        obj = json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
    except RecursionError:
        raise _invalid_json(f"the JSON nests deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        raise _invalid_json(f"the body is not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except ValueError as error:
        # int-digit limit (sys.set_int_max_str_digits), infinite floats, NaN/Infinity literals
        raise _invalid_json(f"the body is not acceptable JSON: {str(error)[:120]}") from None
    return obj


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _json_kind(value: Any) -> str:
    """How JSON calls a parsed value's type (``an array``), for error details."""
    return "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)


def parse_alert(body: bytes) -> CommonAlert:
    """Parse a request body (once) into a :class:`CommonAlert`; raises :class:`AlertParseError`."""
    obj = _loads(body)
    if not isinstance(obj, dict):
        # Valid JSON that cannot be an alert (an array, a string, a number, null) is the wrong
        # schema, not broken bytes: 422, as DESIGN.md's status table says.
        raise _not_common_schema(f"the JSON body must be an object (the common alert schema), not {_json_kind(obj)}")
    # Nesting needs brackets: a body with at most MAX_DEPTH of them (counted in C, strings
    # included, so never too few) cannot nest too deep, and the walk (~15 µs) is skipped.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _too_deep(obj):
        raise _invalid_json(f"the JSON nests deeper than {MAX_DEPTH} levels")
    schema_id = obj.get("schemaId")
    if schema_id != COMMON_ALERT_SCHEMA_ID:
        shown = repr(schema_id)[:60] if schema_id is not None else "missing"
        raise _not_common_schema(
            f"schemaId: expected {COMMON_ALERT_SCHEMA_ID!r}, got {shown}; enable the common alert schema "
            "on the action group's webhook (useCommonAlertSchema: true)"
        )
    try:
        return CommonAlert.from_object(obj)
    except RecursionError:  # defensive: depth is already bounded
        raise _invalid_json(f"the JSON nests deeper than {MAX_DEPTH} levels") from None


def _describe(error: ValidationError) -> str:
    """``field.path: message`` for the first problems, with camelCase field names as sent."""
    parts = []
    for item in error.errors(include_url=False, include_input=False)[:3]:
        location = ".".join(str(part) for part in item["loc"]) or "(body)"
        parts.append(f"{location}: {item['msg']}")
    more = error.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more problem(s)")
    return "; ".join(parts)


# -- alertContext views ------------------------------------------------------------------------


class MetricCriterion(_Open):
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


class MetricCondition(_Open):
    """``alertContext.condition`` of a metric alert."""

    window_size: str | None = Field(default=None, alias="windowSize")
    all_of: list[MetricCriterion] = Field(default_factory=list, alias="allOf")


class MetricContext(_Open):
    """``alertContext`` of a Platform metric alert (``conditionType`` ``*MetricCriteria``/``DynamicThresholdCriteria``/``WebtestLocationAvailabilityCriteria``)."""

    condition_type: str | None = Field(default=None, alias="conditionType")
    condition: MetricCondition


class LogQueryCriterion(_Open):
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


class LogQueryCondition(_Open):
    """``alertContext.condition`` of a log search alert."""

    window_size: str | None = Field(default=None, alias="windowSize")
    all_of: list[LogQueryCriterion] = Field(default_factory=list, alias="allOf")


class LogQueryContext(_Open):
    """``alertContext`` of a Log Alerts V2 / Simple Log Alert rule (``conditionType`` ``LogQueryCriteria``)."""

    condition_type: Literal["LogQueryCriteria"] = Field(alias="conditionType")
    condition: LogQueryCondition


class LogAnalyticsV1Context(_Open):
    """``alertContext`` of a legacy (API 2018-04-16) Log Analytics / Application Insights log alert."""

    search_query: str | None = Field(default=None, alias="SearchQuery")
    result_count: int | None = Field(default=None, alias="ResultCount")
    operator: str | None = Field(default=None, alias="Operator")
    threshold: float | str | None = Field(default=None, alias="Threshold")
    alert_type: str | None = Field(default=None, alias="AlertType")
    link_to_search_results: str | None = Field(default=None, alias="LinkToSearchResults")


class ActivityLogContext(_Open):
    """``alertContext`` of an activity-log alert (Administrative, Policy, Autoscale, Security,
    ServiceHealth, Resource Health): the activity-log event envelope."""

    operation_name: str | None = Field(default=None, alias="operationName")
    status: str | None = None
    caller: str | None = None
    level: str | int | None = None
    event_source: str | int | None = Field(default=None, alias="eventSource")
    event_timestamp: str | None = Field(default=None, alias="eventTimestamp")
    properties: dict[str, Any] | None = None


class PrometheusContext(_Open):
    """``alertContext`` of a Prometheus rule-group alert."""

    expression: str
    expression_value: str | float | None = Field(default=None, alias="expressionValue")
    labels: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None
    rule_group: str | None = Field(default=None, alias="ruleGroup")


class CostBudgetData(_Open):
    """``alertContext.AlertData`` of a budget alert."""

    budget_name: str | None = Field(default=None, alias="BudgetName")
    threshold_type: str | None = Field(default=None, alias="ThresholdType")
    budget_threshold: str | float | None = Field(default=None, alias="BudgetThreshold")
    spent_amount: str | float | None = Field(default=None, alias="SpentAmount")
    forecasted_total: str | float | None = Field(default=None, alias="ForecastedTotalForPeriod")
    unit: str | None = Field(default=None, alias="Unit")


class CostBudgetContext(_Open):
    """``alertContext`` of a CostAlerts (budget) alert."""

    alert_category: str | None = Field(default=None, alias="AlertCategory")
    alert_data: CostBudgetData = Field(alias="AlertData")


class SmartDetectorContext(_Open):
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
        return view.model_validate(context)  # type: ignore[return-value]
    except ValidationError:
        return None


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
