"""The routing file's model: ordered rules that give an alert its assignment group and fields.

Shared by the receiver (``SECURE_EXPORT_ROUTING``) and the Pulumi program (stack config
``secure-export:routing``), so both refuse the same mistakes with the same key paths. It needs
only pydantic and PyYAML: the components must not import the receiver's web stack. The contract
is in docs/design.md; docs/routing.md explains it with a worked example.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from secure_export.contract import SEVERITIES

__all__ = [
    "ALLOWED_FIELDS",
    "RESERVED_FIELDS",
    "RouteDecision",
    "RoutingError",
    "RoutingFile",
    "RoutingSubject",
    "load_routing",
    "parse_routing",
    "problem_lines",
]


ALLOWED_FIELDS = frozenset(
    {"contact_type", "location", "company", "service_offering", "watch_list", "notify", "severity", "u_*"}
)
"""Incident columns a route may set through ``fields`` (``u_*``: the instance's own custom columns)."""

RESERVED_FIELDS = frozenset(
    {
        "state",
        "active",
        "correlation_id",
        "correlation_display",
        "work_notes",
        "comments",
        "close_code",
        "close_notes",
        "short_description",
        "description",
        "sys_id",
        "number",
        "priority",
        "cmdb_ci",
        "impact",
        "urgency",
        "assignment_group",
        "category",
        "subcategory",
        "business_service",
        "caller_id",
    }
)
"""Columns the backend owns or that have a set key of their own: ``fields`` may not touch them."""

_FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]{0,79}")
_MAX_NAME = 160


def _names(value: Any) -> Any:
    """A single value or a list of them, as a list (``severity: Sev1`` means ``[Sev1]``)."""
    return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value


def check_name(value: str) -> str:
    """A name as ServiceNow lookups may use it (stripped); ``ValueError`` saying what is wrong."""
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    if len(text) > _MAX_NAME:
        raise ValueError(f"must be at most {_MAX_NAME} characters")
    # Names are looked up in ServiceNow's encoded queries, which have no escape for '^'.
    if "^" in text or any(ord(c) < 32 for c in text) or text.casefold().startswith("javascript:"):
        raise ValueError("must not contain '^' or control characters, nor start with 'javascript:'")
    return text


_Names = Annotated[list[Annotated[str, BeforeValidator(str)]], BeforeValidator(_names), Field(min_length=1)]
_Name = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Match(_Strict):
    """Conditions of one rule; every key given must hold, a list matches any of its elements."""

    severity: _Names | None = None
    monitoring_service: _Names | None = Field(default=None, alias="monitoringService")
    signal_type: _Names | None = Field(default=None, alias="signalType")
    alert_rule: _Names | None = Field(default=None, alias="alertRule")
    """Globs (``keyvault-*``) on ``essentials.alertRule``."""
    subscription: _Names | None = None
    resource_group: _Names | None = Field(default=None, alias="resourceGroup")
    resource_type: _Names | None = Field(default=None, alias="resourceType")
    """``Microsoft.Compute/virtualMachines`` style, from the target resource ids."""
    target_resource_id: _Names | None = Field(default=None, alias="targetResourceId")
    """Globs on the target resource ids."""
    custom_properties: dict[str, Annotated[str, BeforeValidator(str)]] | None = Field(
        default=None, alias="customProperties"
    )

    @field_validator("severity")
    @classmethod
    def _severities(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        known = {s.casefold(): s for s in SEVERITIES}
        unknown = [v for v in value if v.casefold() not in known]
        if unknown:
            raise ValueError(f"unknown severity {unknown[0]!r}; use {', '.join(SEVERITIES)}")
        return [known[v.casefold()] for v in value]


_Level = Annotated[int, Field(ge=1, le=3)]


class RouteSet(_Strict):
    """What a matching rule sets on the work item (names, resolved to sys_ids by the ServiceNow backend)."""

    assignment_group: Annotated[str, BeforeValidator(str)] | None = Field(default=None, alias="assignmentGroup")
    category: _Name | None = None
    subcategory: _Name | None = None
    impact: _Level | None = None
    urgency: _Level | None = None
    business_service: Annotated[str, BeforeValidator(str)] | None = Field(default=None, alias="businessService")
    caller: Annotated[str, BeforeValidator(str)] | None = None
    fields: dict[str, str | int | bool] | None = None
    """Further incident columns, allow-listed (:data:`ALLOWED_FIELDS`)."""

    @field_validator("assignment_group", "business_service", "caller", "category", "subcategory")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        for name, item in value.items():
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a ServiceNow column name ([a-z_][a-z0-9_]*)")
            if name in RESERVED_FIELDS:
                raise ValueError(f"{name!r} is set by the backend or by its own key; it cannot be a field")
            if name not in ALLOWED_FIELDS and not name.startswith("u_"):
                allowed = ", ".join(sorted(ALLOWED_FIELDS))
                raise ValueError(f"{name!r} is not allowed; allowed fields: {allowed}")
            if isinstance(item, str) and len(item) > 4000:
                raise ValueError(f"value of {name!r} is longer than 4000 characters")
        return value


class Route(_Strict):
    """One rule: ``match`` (all keys must hold) and ``set``."""

    match: Match
    set: RouteSet


class RoutingFile(_Strict):
    """The whole routing file: ``routes`` (first match wins) and ``default``."""

    routes: list[Route] = Field(default_factory=list)
    default: RouteSet = Field(default_factory=RouteSet)

    def decide(self, subject: RoutingSubject) -> RouteDecision:
        """The first matching rule's settings, else the default's (``rule`` says which: index or ``default``)."""
        for index, route in enumerate(self.routes):
            if _matches(route.match, subject):
                return RouteDecision.of(route.set, f"routes[{index}]", self.default)
        return RouteDecision.of(self.default, "default", self.default)


@dataclass(frozen=True, slots=True)
class RoutingSubject:
    """What a rule can match on, taken from one alert."""

    severity: str | None = None
    monitoring_service: str | None = None
    signal_type: str | None = None
    alert_rule: str | None = None
    target_ids: tuple[str, ...] = ()
    custom_properties: Mapping[str, str] = field(default_factory=dict)
    alert_id: str = ""


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The routed fields of one work item; ``None`` where no rule sets them."""

    rule: str = "default"
    assignment_group: str | None = None
    category: str | None = None
    subcategory: str | None = None
    impact: int | None = None
    urgency: int | None = None
    business_service: str | None = None
    caller: str | None = None
    fields: Mapping[str, str | int | bool] = field(default_factory=dict)
    default_group: str | None = None
    """The default's assignment group: where an item goes when its own group does not exist."""

    @classmethod
    def of(cls, chosen: RouteSet, rule: str, default: RouteSet) -> RouteDecision:
        """Settings of a rule; what it leaves unset the default supplies (a rule may set only a category)."""

        def pick(name: str) -> Any:
            value = getattr(chosen, name)
            return value if value is not None else getattr(default, name)

        return cls(
            rule=rule,
            assignment_group=pick("assignment_group"),
            category=pick("category"),
            subcategory=pick("subcategory"),
            impact=pick("impact"),
            urgency=pick("urgency"),
            business_service=pick("business_service"),
            caller=pick("caller"),
            fields={**(default.fields or {}), **(chosen.fields or {})},
            default_group=default.assignment_group,
        )


# -- matching ---------------------------------------------------------------------------------


def _resource_parts(resource_id: str) -> dict[str, str]:
    """Subscription, resource group and type (``Microsoft.X/y[/z]``) of an ARM id, where present."""
    parts = [p for p in resource_id.strip("/").split("/") if p]
    found: dict[str, str] = {}
    lowered = [p.casefold() for p in parts]
    if "subscriptions" in lowered:
        index = lowered.index("subscriptions")
        if index + 1 < len(parts):
            found["subscription"] = parts[index + 1]
    if "resourcegroups" in lowered:
        index = lowered.index("resourcegroups")
        if index + 1 < len(parts):
            found["resource_group"] = parts[index + 1]
    if "providers" in lowered:
        index = len(lowered) - 1 - lowered[::-1].index("providers")
        rest = parts[index + 1 :]
        if rest:
            # Microsoft.Sql/servers/db1/databases/db2 → Microsoft.Sql/servers/databases
            found["resource_type"] = "/".join([rest[0], *rest[1::2]])
    return found


def _any_equal(wanted: Sequence[str], values: Sequence[str]) -> bool:
    keys = {w.casefold() for w in wanted}
    return any(v.casefold() in keys for v in values)


def _any_glob(patterns: Sequence[str], values: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(v.casefold(), p.casefold()) for p in patterns for v in values)


def _matches(match: Match, subject: RoutingSubject) -> bool:
    def one(value: str | None) -> list[str]:
        return [value] if value else []

    parts = [_resource_parts(target) for target in subject.target_ids]
    if not parts and subject.alert_id:
        parts = [_resource_parts(subject.alert_id)]  # service health targets only the subscription
    checks: list[tuple[list[str] | None, list[str], bool]] = [
        (match.severity, one(subject.severity), False),
        (match.monitoring_service, one(subject.monitoring_service), False),
        (match.signal_type, one(subject.signal_type), False),
        (match.alert_rule, one(subject.alert_rule), True),
        (match.subscription, [p["subscription"] for p in parts if "subscription" in p], False),
        (match.resource_group, [p["resource_group"] for p in parts if "resource_group" in p], False),
        (match.resource_type, [p["resource_type"] for p in parts if "resource_type" in p], False),
        (match.target_resource_id, list(subject.target_ids), True),
    ]
    for wanted, values, glob in checks:
        if wanted is None:
            continue
        if not (_any_glob(wanted, values) if glob else _any_equal(wanted, values)):
            return False
    if match.custom_properties:
        have = {str(k).casefold(): str(v).casefold() for k, v in subject.custom_properties.items()}
        for key, value in match.custom_properties.items():
            if have.get(key.casefold()) != value.casefold():
                return False
    return True


# -- loading ----------------------------------------------------------------------------------


class RoutingError(ValueError):
    """The routing document is invalid; ``problems`` has one line per problem, each with its key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"invalid routing {source}:\n" + "\n".join(problems))
        self.problems = problems


def _path(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("function-before", "function-after", "list", "str", "int", "bool"):
            continue  # pydantic's internal validator steps, not keys of the file
        else:
            text += ("." if text else "") + str(part)
    return text


def problem_lines(error: ValidationError, prefix: str = "") -> list[str]:
    """One ``routes[3].match.severity: what is wrong`` line per problem."""
    lines = []
    for item in error.errors(include_url=False):
        path = _path(item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key; see docs/routing.md for the keys a routing file takes"
        full = f"{prefix}.{path}" if prefix and path else prefix or path
        lines.append(f"{full or '(top level)'}: {message}")
    return list(dict.fromkeys(lines))


def parse_routing(document: Any, *, source: str = "routing", prefix: str = "") -> RoutingFile:
    """Validate a routing document (already parsed); raises :class:`RoutingError` with every problem."""
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise RoutingError(source, [f"{prefix or '(top level)'}: must be a mapping with routes and default"])
    try:
        return RoutingFile.model_validate(document)
    except ValidationError as error:
        raise RoutingError(source, problem_lines(error, prefix)) from None


def load_routing(path: str) -> RoutingFile:
    """Read a routing file (YAML, or JSON which YAML reads too); raises :class:`RoutingError`."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise RoutingError(f"file {path!r}", [f"cannot read it: {error.strerror or error}"]) from None
    try:
        document = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise RoutingError(
            f"file {path!r}", [f"not valid {'JSON' if path.endswith('.json') else 'YAML'}: {error}"]
        ) from None
    return parse_routing(document, source=f"file {path!r}")
