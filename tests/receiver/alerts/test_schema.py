"""parse_alert and the common alert schema models, against Microsoft's published payloads and bad input."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.alerts.contexts import (
    ActivityLogContext,
    CostBudgetContext,
    LogAnalyticsV1Context,
    LogQueryContext,
    MetricContext,
    PrometheusContext,
    SmartDetectorContext,
    context_view,
)
from receiver.alerts.schema import AlertParseError, CommonAlert, parse_alert
from receiver.alerts.summary import condition_summary
from tests.support.paths import SAMPLES

NOT_COMMON = "legacy2022-budget-aip-notification.not-common-schema.json"
FULL = sorted(
    p.name for p in SAMPLES.glob("*.json") if not p.name.endswith(".alertcontext.json") and p.name != NOT_COMMON
)
FRAGMENTS = sorted(p.name for p in SAMPLES.glob("*.alertcontext.json"))

# monitoringService of each published alertContext fragment (from the doc heading it came from)
FRAGMENT_SERVICE = {
    "activity-log-administrative": "Activity Log - Administrative",
    "activity-log-autoscale": "Activity Log - Autoscale",
    "activity-log-policy": "Activity Log - Policy",
    "activity-log-security": "Activity Log - Security",
    "application-insights-v1-metric-measurement": "Application Insights",
    "legacy2020-application-insights-v1-metric-measurement": "Application Insights",
    "legacy2020-log-alerts-v2": "Log Alerts V2",
    "legacy2020-log-analytics-v1-metric-measurement": "Log Analytics",
    "log-alerts-v2": "Log Alerts V2",
    "log-analytics-v1-metric-measurement": "Log Analytics",
    "platform-metric-availability-test": "Platform",
    "platform-metric-dynamic": "Platform",
    "platform-metric-static": "Platform",
    "prometheus": "Prometheus",
    "resource-health": "Resource Health",
    "service-health": "ServiceHealth",
    "service-health-string-enums": "ServiceHealth",
    "simple-log-alert": "Simple Log Alert",
}

EXPECTED_VIEW = {
    "Platform": MetricContext,
    "Log Alerts V2": LogQueryContext,
    "Simple Log Alert": LogQueryContext,
    "Log Analytics": LogAnalyticsV1Context,
    "Application Insights": LogAnalyticsV1Context,
    "Prometheus": PrometheusContext,
    "CostAlerts": CostBudgetContext,
    "SmartDetector": SmartDetectorContext,
}

SUB = "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"


def essentials(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "alertId": f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts/0000-1111",
        "alertRule": "wrapped-fragment-rule",
        "severity": "Sev3",
        "signalType": "Metric",
        "monitorCondition": "Fired",
        "monitoringService": "Platform",
        "alertTargetIDs": [f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"],
        "configurationItems": ["vm1"],
        "originAlertId": "origin",
        "firedDateTime": "2025-04-15T18:17:12.851Z",
        "description": "wrapped",
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


def wrap(alert_context: Any, **essential_fields: Any) -> dict[str, Any]:
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"essentials": essentials(**essential_fields), "alertContext": alert_context},
    }


def encode(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def load(name: str) -> tuple[bytes, Any]:
    raw = (SAMPLES / name).read_bytes()
    return raw, json.loads(raw)


# -- conformance corpus ---------------------------------------------------------------------


def test_corpus_is_present() -> None:
    assert len(FULL) >= 20
    assert len(FRAGMENTS) >= 15
    assert {name.removesuffix(".alertcontext.json") for name in FRAGMENTS} == set(FRAGMENT_SERVICE)


@pytest.mark.parametrize("name", FULL)
def test_every_published_full_payload_parses(name: str) -> None:
    body, obj = load(name)
    alert = parse_alert(body)
    published = obj["data"]["essentials"]
    assert alert.schema_id == "azureMonitorCommonAlertSchema"
    assert alert.essentials.alert_id == published["alertId"]
    assert alert.essentials.monitor_condition == published["monitorCondition"]
    assert alert.essentials.monitoring_service == published.get("monitoringService")
    assert alert.essentials.severity == published.get("severity")
    assert alert.essentials.alert_target_ids == published.get("alertTargetIDs")
    assert alert.essentials.configuration_items == published.get("configurationItems")
    assert alert.data.alert_context == obj["data"].get("alertContext")
    assert alert.data.custom_properties == obj["data"].get("customProperties")
    assert alert.raw == obj
    fired = alert.essentials.fired_date_time
    assert fired is not None and fired.utcoffset() == timedelta(0)
    expected_view = EXPECTED_VIEW.get(published["monitoringService"], ActivityLogContext)
    assert isinstance(context_view(alert), expected_view)
    summary = condition_summary(alert)
    assert summary and "\n" not in summary


@pytest.mark.parametrize("name", FRAGMENTS)
def test_every_published_alert_context_fragment_parses_when_wrapped(name: str) -> None:
    _, fragment = load(name)
    service = FRAGMENT_SERVICE[name.removesuffix(".alertcontext.json")]
    alert = parse_alert(encode(wrap(fragment["alertContext"], monitoringService=service)))
    assert alert.data.alert_context == fragment["alertContext"]
    assert isinstance(context_view(alert), EXPECTED_VIEW.get(service, ActivityLogContext))
    summary = condition_summary(alert)
    assert summary and "\n" not in summary


def test_not_common_schema_sample_is_422() -> None:
    body, _ = load(NOT_COMMON)
    with pytest.raises(AlertParseError) as raised:
        parse_alert(body)
    assert raised.value.status == 422
    assert raised.value.code == "not_common_alert_schema"
    assert "schemaId" in raised.value.detail
    assert raised.value.to_json() == {"error": "not_common_alert_schema", "detail": raised.value.detail}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("platform-metric-static-resolved.json", ["Percentage CPU", "(Average)", "7.727", "GreaterThan 25"]),
        ("platform-metric-dynamic-fired.test-action.json", ["Transactions", "78.09", "Low sensitivity"]),
        ("platform-availability-test-fired.test-action.json", ["test-availabilityTest", "GreaterThan 2"]),
        ("log-alerts-v2-fired.test-action.json", ["= 3", "GreaterThan 0", "Heartbeat"]),
        ("log-analytics-v1-number-of-results-fired.test-action.json", ["Number of results", "result count = 1"]),
        ("activity-log-administrative-fired.test-action.json", ["virtualMachines/restart/action", "Succeeded"]),
        ("cost-alerts-actual-cost-budget-fired.test-action.json", ["Test_actual_cost_budget", "$50.00"]),
        ("cost-alerts-forecasted-budget-fired.test-action.json", ["forecast", "$1111.11"]),
        ("resource-health-fired.test-action.json", ["Rebooted by user", "Available -> Unavailable"]),
        ("service-health-fired.test-action.json", ["Incident", "TestActionGroup-TestServiceHealthAlert"]),
        ("smart-detector-fired.test-action.json", ["degradation", "0.45 sec"]),
    ],
)
def test_condition_summary_says_what_fired(name: str, expected: list[str]) -> None:
    summary = condition_summary(parse_alert(load(name)[0]))
    assert summary is not None
    for fragment in expected:
        assert fragment in summary


def test_prometheus_summary() -> None:
    _, fragment = load("prometheus.alertcontext.json")
    alert = parse_alert(encode(wrap(fragment["alertContext"], monitoringService="Prometheus")))
    assert condition_summary(alert) == "sql_up > 0 = 0"


def test_summary_is_one_bounded_line() -> None:
    context = {"conditionType": "LogQueryCriteria", "condition": {"allOf": [{"searchQuery": "a\nb\r\n" + "x" * 2000}]}}
    summary = condition_summary(parse_alert(encode(wrap(context, monitoringService="Log Alerts V2"))))
    assert summary is not None
    assert "\n" not in summary and "\r" not in summary
    assert len(summary) <= 300


@pytest.mark.parametrize(
    "context",
    [
        None,
        {},
        {"condition": {"allOf": "not a list"}},
        {"condition": {"allOf": [{"metricValue": {"nested": 1}}]}},
        {"AlertData": {"BudgetName": ["odd"]}},
        {"expression": 12},
        {"operationName": 5, "properties": "x"},
    ],
)
def test_unexpected_context_shapes_get_no_view_but_are_accepted(context: Any) -> None:
    alert = parse_alert(encode(wrap(context, monitoringService="Platform")))
    assert alert.data.alert_context == context
    summary = condition_summary(alert)  # never raises
    assert summary is None or isinstance(summary, str)


# -- types as Microsoft sends them ------------------------------------------------------------


def test_cost_alert_nulls_are_accepted() -> None:
    alert = parse_alert(load("cost-alerts-budget-fired.test-action.json")[0])
    assert alert.essentials.severity is None
    assert alert.essentials.signal_type is None
    assert alert.essentials.alert_rule is None
    assert alert.essentials.alert_target_ids is None


def test_seven_fractional_digits_and_missing_zone() -> None:
    alert = parse_alert(load("legacy2020-platform-metric-static-resolved.json")[0])
    assert alert.essentials.fired_date_time == datetime(2019, 3, 22, 13, 58, 24, 371321, tzinfo=UTC)
    assert alert.essentials.resolved_date_time == datetime(2019, 3, 22, 14, 3, 16, 224631, tzinfo=UTC)
    no_zone = parse_alert(load("legacy2022-service-health-fired.test-action.json")[0])
    assert no_zone.essentials.fired_date_time == datetime(2021, 11, 17, 5, 34, 48, 62317, tzinfo=UTC)


def test_alert_rule_id_in_both_spellings() -> None:
    with_sample_spelling = parse_alert(load("platform-metric-static-resolved-with-custom-properties.json")[0])
    assert with_sample_spelling.essentials.alert_rule_id
    documented = parse_alert(encode(wrap({}, alertRuleID="/subscriptions/x/rule")))
    assert documented.essentials.alert_rule_id == "/subscriptions/x/rule"
    assert documented.essentials.model_dump(by_alias=True)["alertRuleID"] == "/subscriptions/x/rule"


def test_optional_essentials_may_be_missing() -> None:
    minimal = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"essentials": {"alertId": "/subscriptions/s/alerts/1", "monitorCondition": "Resolved"}},
    }
    alert = parse_alert(encode(minimal))
    assert alert.essentials.monitor_condition == "Resolved"
    assert alert.essentials.alert_rule is None
    assert alert.data.alert_context is None
    assert alert.essentials.fired_date_time is None


def test_unknown_fields_and_services_are_kept() -> None:
    obj = wrap(
        {"quantumFlux": [1, 2, {"deep": True}]},
        monitoringService="Quantum Monitor",
        futureField={"a": 1},
        investigationLink="https://portal.azure.com/#view/x",
        intendedResource="/subscriptions/x/y",
    )
    obj["newTopLevel"] = "kept"
    obj["data"]["extraSection"] = {"k": "v"}
    alert = parse_alert(encode(obj))
    assert alert.raw == obj
    assert alert.model_extra == {"newTopLevel": "kept"}
    assert alert.data.model_extra == {"extraSection": {"k": "v"}}
    assert alert.essentials.model_extra == {"futureField": {"a": 1}}
    assert alert.essentials.monitoring_service == "Quantum Monitor"
    assert alert.essentials.investigation_link == "https://portal.azure.com/#view/x"
    assert alert.essentials.intended_resource == "/subscriptions/x/y"
    assert context_view(alert) is None
    assert condition_summary(alert) is None
    dumped = alert.model_dump(by_alias=True, mode="json")
    assert dumped["newTopLevel"] == "kept"
    assert dumped["data"]["essentials"]["futureField"] == {"a": 1}


def test_raw_is_not_settable_from_the_payload() -> None:
    obj = wrap({})
    obj["raw"] = {"forged": True}
    obj["_raw"] = {"forged": True}
    alert = parse_alert(encode(obj))
    assert alert.raw == obj  # the whole object as received, not the forged member


# -- 400: not JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{",
        b"not json",
        b"\xff\xfe{}",
        b"\xef\xbb\xbf" + encode(wrap({})),  # UTF-8 BOM
        encode(wrap({}))[:-1],
        b"[" * 200_000,
        b'{"a":' + b"[" * 65 + b"]" * 65 + b"}",
        b'{"schemaId":"azureMonitorCommonAlertSchema","n":' + b"9" * 5000 + b"}",
        b'{"a":1e999}',
        b'{"a":-1e999}',
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":"\xed\xa0\x80"}',  # UTF-8-encoded surrogate: not valid UTF-8
    ],
    ids=lambda body: repr(body[:30]),
)
def test_not_json_is_400(body: bytes) -> None:
    with pytest.raises(AlertParseError) as raised:
        parse_alert(body)
    assert raised.value.status == 400
    assert raised.value.code == "invalid_json"
    assert raised.value.detail


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"[]", "an array"),
        (encode([wrap({})]), "an array"),
        (b'"a string"', "a string"),
        (b"42", "a number"),
        (b"-0.5", "a number"),
        (b"null", "null"),
        (b"true", "a boolean"),
    ],
    ids=lambda value: repr(value[:30]) if isinstance(value, bytes) else value,
)
def test_json_that_is_not_an_object_is_422(body: bytes, kind: str) -> None:
    # docs/design.md: 400 is for bytes that are not JSON; valid JSON that is not the schema is 422.
    with pytest.raises(AlertParseError) as raised:
        parse_alert(body)
    assert raised.value.status == 422
    assert raised.value.code == "not_common_alert_schema"
    assert kind in raised.value.detail


def test_nesting_at_the_limit_is_accepted() -> None:
    obj = wrap({})
    node: Any = obj["data"]["essentials"]
    # schemaId object is depth 1, data 2, essentials 3: add nested lists up to depth 64.
    node["deep"] = nested = []
    for _ in range(64 - 4):
        inner: list[Any] = []
        nested.append(inner)
        nested = inner
    alert = parse_alert(encode(obj))
    assert alert.raw == obj


# -- 422: JSON, not the common schema ------------------------------------------------------------


def _without(path: list[str]) -> dict[str, Any]:
    obj = copy.deepcopy(wrap({}))
    node = obj
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return obj


def _with(path: list[str], value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(wrap({}))
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return obj


E = ["data", "essentials"]

INVALID = [
    ("missing schemaId", _without(["schemaId"]), "schemaId"),
    ("other schemaId", _with(["schemaId"], "AIP Budget Notification"), "schemaId"),
    ("schemaId not a string", _with(["schemaId"], 1), "schemaId"),
    ("missing data", _without(["data"]), "data"),
    ("data not an object", _with(["data"], []), "data"),
    ("missing essentials", _without(["data", "essentials"]), "essentials"),
    ("essentials null", _with(["data", "essentials"], None), "essentials"),
    ("missing alertId", _without([*E, "alertId"]), "alertId"),
    ("alertId null", _with([*E, "alertId"], None), "alertId"),
    ("alertId empty", _with([*E, "alertId"], ""), "alertId"),
    ("alertId a number", _with([*E, "alertId"], 7), "alertId"),
    ("missing monitorCondition", _without([*E, "monitorCondition"]), "monitorCondition"),
    ("monitorCondition unknown", _with([*E, "monitorCondition"], "Open"), "monitorCondition"),
    ("monitorCondition lower case", _with([*E, "monitorCondition"], "fired"), "monitorCondition"),
    ("severity Sev5", _with([*E, "severity"], "Sev5"), "severity"),
    ("severity a number", _with([*E, "severity"], 3), "severity"),
    ("alertTargetIDs a string", _with([*E, "alertTargetIDs"], "/subscriptions/x"), "alertTargetIDs"),
    ("configurationItems of numbers", _with([*E, "configurationItems"], [1, 2]), "configurationItems"),
    ("firedDateTime epoch number", _with([*E, "firedDateTime"], 1700000000), "firedDateTime"),
    ("firedDateTime not a date", _with([*E, "firedDateTime"], "yesterday"), "firedDateTime"),
    ("alertRule an object", _with([*E, "alertRule"], {"name": "x"}), "alertRule"),
    ("description a list", _with([*E, "description"], ["x"]), "description"),
    ("alertContext a list", _with(["data", "alertContext"], [1]), "alertContext"),
    ("customProperties a string", _with(["data", "customProperties"], "k=v"), "customProperties"),
]


@pytest.mark.parametrize(("case", "obj", "field"), INVALID, ids=[case for case, _, _ in INVALID])
def test_not_common_schema_is_422_naming_the_field(case: str, obj: dict[str, Any], field: str) -> None:
    with pytest.raises(AlertParseError) as raised:
        parse_alert(encode(obj))
    assert raised.value.status == 422, case
    assert raised.value.code == "not_common_alert_schema"
    assert field in raised.value.detail


def test_422_detail_does_not_echo_values() -> None:
    secret_looking = "x" * 50 + "SECRET-VALUE"
    with pytest.raises(AlertParseError) as raised:
        parse_alert(encode(_with([*E, "monitorCondition"], secret_looking)))
    assert "SECRET-VALUE" not in raised.value.detail


def test_from_object_validates_an_already_parsed_object() -> None:
    obj = wrap({})
    assert CommonAlert.from_object(obj).raw is obj
    with pytest.raises(AlertParseError) as raised:
        CommonAlert.from_object(_without([*E, "alertId"]))
    assert raised.value.status == 422


# -- robustness ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_errors(body: bytes) -> None:
    try:
        parse_alert(body)
    except AlertParseError as error:
        assert error.status in (400, 422)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    essentials_patch=st.dictionaries(
        st.sampled_from(
            [
                "alertId",
                "monitorCondition",
                "severity",
                "alertTargetIDs",
                "configurationItems",
                "firedDateTime",
                "resolvedDateTime",
                "alertRule",
                "signalType",
                "unknownField",
            ]
        ),
        json_values,
        max_size=5,
    ),
    context=json_values,
)
def test_arbitrary_field_values_give_a_model_or_422(essentials_patch: dict[str, Any], context: Any) -> None:
    obj = wrap(context)
    obj["data"]["essentials"].update(essentials_patch)
    try:
        alert = parse_alert(encode(obj))
    except AlertParseError as error:
        assert error.status == 422
        return
    assert alert.raw == obj
    summary = condition_summary(alert)
    assert summary is None or "\n" not in summary
