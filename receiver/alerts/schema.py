"""The Azure Monitor common alert schema as pydantic models, and the one place request bodies are parsed.

:func:`parse_alert` answers 400 (not JSON) or 422 (not the common schema) through
:class:`AlertParseError`; unknown fields and services are kept, never rejected (docs/receiver.md).
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

COMMON_ALERT_SCHEMA_ID = "azureMonitorCommonAlertSchema"

MAX_DEPTH = 64
"""Deepest nesting of objects/arrays accepted. Real payloads nest about 8 levels."""

# The values of secure_export.contract.SEVERITIES, spelled out because a type needs literals (a test holds them equal).
Severity = Literal["Sev0", "Sev1", "Sev2", "Sev3", "Sev4"]


class AlertParseError(Exception):
    """A body that is not a common-schema alert: 400 (``invalid_json``) or 422 (``not_common_alert_schema``)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail

    def to_json(self) -> dict[str, str]:
        """The JSON error body of docs/design.md: ``{"error": code, "detail": detail}``."""
        return {"error": self.code, "detail": self.detail}


def _invalid_json(detail: str) -> AlertParseError:
    return AlertParseError(400, "invalid_json", detail)


def _not_common_schema(detail: str) -> AlertParseError:
    return AlertParseError(422, "not_common_alert_schema", detail)


class OpenModel(BaseModel):
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


class Essentials(OpenModel):
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


class AlertData(OpenModel):
    """``data``: essentials, the per-service ``alertContext`` and the rule's ``customProperties``."""

    essentials: Essentials
    alert_context: dict[str, Any] | None = Field(default=None, alias="alertContext")
    custom_properties: dict[str, Any] | None = Field(default=None, alias="customProperties")


class CommonAlert(OpenModel):
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
        # schema, not broken bytes: 422, as docs/design.md's status table says.
        raise _not_common_schema(f"the JSON body must be an object (the common alert schema), not {_json_kind(obj)}")
    # Nesting needs brackets: a body with at most MAX_DEPTH of them (counted in C, strings
    # included, so never too few) cannot nest too deep, and the walk is skipped.
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
