"""What Azure refuses at deploy time beyond the REST schema, found at plan time instead.

Each check takes one rule (or action group) in the components' argument form: the snake_case
dicts ``AlertRules`` receives and ``StackConfig.to_args`` produces. It returns findings, each a key
path relative to that rule, a one-line reason, and whether Azure refuses it or it only deserves a
warning. The config layer turns them into ``secure-export:alertRules.log[0].muteActionsDuration: ...``
lines; the components raise on refusals. docs/deploy-rules.md lists every rule with its source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel

from secure_export.stack.validation import duration_seconds, subscription_of

Path = tuple[str | int, ...]

METRIC_FREQUENCIES = ("PT1M", "PT5M", "PT15M", "PT30M", "PT1H")
METRIC_WINDOWS = ("PT1M", "PT5M", "PT15M", "PT30M", "PT1H", "PT6H", "PT12H", "P1D")
LOG_FREQUENCIES = (
    "PT1M", "PT5M", "PT10M", "PT15M", "PT30M", "PT45M", "PT1H", "PT2H", "PT3H", "PT4H", "PT5H", "PT6H", "P1D"
)  # fmt: skip
LOG_WINDOWS = (*LOG_FREQUENCIES, "P2D")
LOG_MUTE_DURATIONS = (*LOG_FREQUENCIES[1:], "P2D")
LOG_LOOKBACK_SECONDS = 2 * 86400
"""A log rule's query looks back windowSize x evaluation periods, at most 48 hours."""
LOG_MAX_DIMENSIONS = 6
MAX_EMAIL_RECEIVERS = 1000
MAX_EMAIL_ADDRESS_LENGTH = 64
MAX_ACTIVITY_LOG_RULES = 100
"""Active activity log alert rules per subscription; Azure cannot raise it."""


@dataclass(frozen=True)
class Finding:
    """One deploy-time rule a rule's arguments break: refused by Azure, or only worth a warning."""

    path: Path
    """Key path relative to the rule: snake_case field names and list indexes."""
    message: str
    """Why, in one line."""
    refused: bool = True
    """True: Azure refuses the deployment. False: Azure accepts it, but it misbehaves."""


def camel_path(path: Path) -> str:
    """Render a relative path as stack-file keys: ``failingPeriods.evaluationPeriods``, ``scopes[1]``."""
    return _render(path, to_camel)


def snake_path(path: Path) -> str:
    """Render a relative path as component argument names: ``failing_periods.evaluation_periods``."""
    return _render(path, str)


def _render(path: Path, name: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + name(part)
    return out


def refusal_text(component: str, kind: str, rule_name: str, findings: Sequence[Finding]) -> str | None:
    """Return the ``ValueError`` text for a component's refused findings, or None if there are none."""
    refused = [f for f in findings if f.refused]
    if not refused:
        return None
    return "; ".join(f"{component}: {kind} rule {rule_name!r}: {snake_path(f.path)}: {f.message}" for f in refused)


# --- log search (scheduled query) rules -------------------------------------------------------


def log_rule_findings(rule: Mapping[str, Any]) -> list[Finding]:
    """Deploy-time rules of one log search rule (component argument form)."""
    findings: list[Finding] = []
    findings += _one_of(rule, "evaluation_frequency", LOG_FREQUENCIES, "a log search rule")
    findings += _one_of(rule, "window_size", LOG_WINDOWS, "a log search rule")
    findings += _one_of(rule, "mute_actions_duration", LOG_MUTE_DURATIONS, "a log search rule")
    findings += _lookback_within_two_days(rule)
    findings += _mute_needs_stateless(rule)
    findings += _periods_need_time_column(rule)
    findings += _silence_outlives_window(rule)
    findings += _at_most_six_dimensions(rule)
    findings += _one_minute_query_operations(rule)
    return findings


def _at_most_six_dimensions(rule: Mapping[str, Any]) -> list[Finding]:
    dimensions = list(rule.get("dimensions") or [])
    if len(dimensions) <= LOG_MAX_DIMENSIONS:
        return []
    return [
        Finding(
            ("dimensions",),
            f"lists {len(dimensions)} dimensions; Azure applies at most {LOG_MAX_DIMENSIONS} per log search rule",
        )
    ]


_ONE_MINUTE_UNSUPPORTED = re.compile(r"\b(search|union|take|limit|ingestion_time\s*\(|adx\s*\()", re.IGNORECASE)


def _one_minute_query_operations(rule: Mapping[str, Any]) -> list[Finding]:
    # At a one-minute frequency Azure rewrites the query, and these operations make the rewrite fail.
    try:
        if duration_seconds(str(rule.get("evaluation_frequency"))) != 60:
            return []
    except ValueError:
        return []
    text = _COMMENT.sub("", _STRING.sub("''", str(rule.get("query") or "")))
    found = sorted({m.group(1).rstrip("( ").lower() for m in _ONE_MINUTE_UNSUPPORTED.finditer(text)})
    if not found:
        return []
    return [
        Finding(
            ("evaluation_frequency",),
            f"is PT1M and the query uses {', '.join(found)}: at a one-minute frequency Azure rewrites the query, "
            "which fails with these; use PT5M or drop them",
            refused=False,
        )
    ]


def _lookback_within_two_days(rule: Mapping[str, Any]) -> list[Finding]:
    periods = (rule.get("failing_periods") or {}).get("evaluation_periods") or 1
    try:
        lookback = duration_seconds(str(rule.get("window_size"))) * periods
    except ValueError:
        return []
    if lookback <= LOG_LOOKBACK_SECONDS:
        return []
    return [
        Finding(
            ("failing_periods", "evaluation_periods"),
            f"{periods} periods of {rule.get('window_size')} look back further than Azure allows (windowSize x "
            "evaluation periods at most 48 hours); use fewer periods or a shorter window",
        )
    ]


_ABSENCE = re.compile(r"<=?\s*ago\s*\(", re.IGNORECASE)
SILENCE_WINDOW_SECONDS = 86400
"""Shortest window a heartbeat-style (absence) rule should look back over: one day."""


def _silence_outlives_window(rule: Mapping[str, Any]) -> list[Finding]:
    # "last seen < ago(X)" only sees rows inside the window: once a machine has been silent for
    # longer than the window it has no rows, drops out of the result, and a stateful rule resolves.
    if rule.get("auto_mitigate", True) is False or not _ABSENCE.search(str(rule.get("query") or "")):
        return []
    try:
        window = duration_seconds(str(rule.get("window_size")))
    except ValueError:
        return []
    if window >= SILENCE_WINDOW_SECONDS:
        return []
    return [
        Finding(
            ("window_size",),
            f"is {rule.get('window_size')} and the query looks for silence (< ago(...)): a machine silent for longer "
            "than the window drops out of the result and its alert resolves while it is still silent; use at least P1D",
            refused=False,
        )
    ]


_STRING = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_COMMENT = re.compile(r"//[^\n]*")
_TIME = re.compile(r"\b(TimeGenerated|timestamp)\b", re.IGNORECASE)
_SHAPING = re.compile(
    r"^\s*(summarize|project|project-keep|project-away|distinct|count)\b(.*)$", re.IGNORECASE | re.DOTALL
)


def query_time_column(query: str) -> bool | None:
    """Whether the query's result has a time column: True, False (clearly none), None (cannot tell).

    A rough reading, not a KQL parser: the last operator that decides the columns (``summarize``,
    ``project``, ``distinct``, ``count``) keeps a time column when it names TimeGenerated (or
    Application Insights' timestamp), e.g. ``summarize ... by bin(TimeGenerated, 5m), Computer``.
    A query without one keeps its table's columns, which this reading cannot see.
    """
    text = _COMMENT.sub("", _STRING.sub("''", query))
    stages = text.split("|")
    for index in range(len(stages) - 1, -1, -1):
        match = _SHAPING.match(stages[index])
        if match is None:
            continue
        if any(_TIME.search(later) for later in stages[index + 1 :]):
            return None  # a later stage (extend, say) may bring a time column back
        operator, rest = match.group(1).lower(), match.group(2)
        if operator == "count":
            return False
        if operator == "summarize":
            by = re.split(r"\bby\b", rest, maxsplit=1, flags=re.IGNORECASE)
            return len(by) == 2 and bool(_TIME.search(by[1]))
        if operator == "project-away":
            return None if _TIME.search(rest) is None else False
        return bool(_TIME.search(rest))
    return None


def _periods_need_time_column(rule: Mapping[str, Any]) -> list[Finding]:
    # Azure takes more than one evaluation period only from a query whose result has a time column.
    periods = (rule.get("failing_periods") or {}).get("evaluation_periods") or 1
    if periods <= 1:
        return []
    has_time = query_time_column(str(rule.get("query") or ""))
    if has_time:
        return []
    path: Path = ("failing_periods", "evaluation_periods")
    if has_time is False:
        return [
            Finding(
                path,
                f"is {periods}, but the query's result has no time column (Azure then requires 1): "
                "summarize by bin(TimeGenerated, <windowSize>) as well, or use 1",
            )
        ]
    return [
        Finding(
            path,
            f"is {periods}: Azure requires 1 unless the query's result has a time column, and plan cannot tell "
            "whether this query's has; end it with summarize ... by bin(TimeGenerated, <windowSize>), ...",
            refused=False,
        )
    ]


def _mute_needs_stateless(rule: Mapping[str, Any]) -> list[Finding]:
    # Azure: "Auto mitigation must be disabled when action suppression is set".
    stateful = rule.get("auto_mitigate", True) is not False
    if rule.get("mute_actions_duration") and stateful:
        return [
            Finding(
                ("mute_actions_duration",),
                'Azure refuses muted actions on a stateful rule ("Auto mitigation must be disabled when action '
                'suppression is set"); remove it, or set autoMitigate: false and accept that Resolved never '
                "reaches the ITSM tool",
            )
        ]
    if not stateful:
        return [
            Finding(
                ("auto_mitigate",),
                "autoMitigate is false: Azure never sends Resolved for this rule, so its work items stay open "
                "in the ITSM tool until someone closes them",
                refused=False,
            )
        ]
    return []


# --- the whole stack --------------------------------------------------------------------------

_RULE_KINDS = (("metric", "metric"), ("log", "log"), ("activity_log", "activityLog"))


def stack_findings(
    alert_rules: Mapping[str, Sequence[Mapping[str, Any]]],
    email_receivers: Sequence[Mapping[str, Any]] = (),
    identifier_uri: str | None = None,
) -> list[tuple[str, Finding]]:
    """Every finding of a stack's rules and action group, each with its key path under ``secure-export:``.

    ``alert_rules`` maps metric, log and activity_log to lists of rules in component argument form.
    """
    checks = {"metric": metric_rule_findings, "log": log_rule_findings, "activity_log": activity_log_rule_findings}
    found: list[tuple[str, Finding]] = [
        (f"actionGroup.{camel_path(f.path)}", f) for f in action_group_findings(email_receivers)
    ]
    found += [("identity.identifierUri", f) for f in identifier_uri_findings(identifier_uri)]
    found += [("alertRules.activityLog", f) for f in activity_log_count_findings(alert_rules.get("activity_log") or [])]
    for kind, key in _RULE_KINDS:
        for index, rule in enumerate(alert_rules.get(kind) or []):
            for finding in checks[kind](rule):
                found.append((f"alertRules.{key}[{index}].{camel_path(finding.path)}", finding))
    return found


_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


def identifier_uri_has_tenant_identifier(uri: str) -> bool:
    """Whether Entra's ``uriAdditionWithoutUniqueTenantIdentifier`` restriction accepts ``uri``.

    Accepted: ``api://<GUID>[/...]`` (client or tenant id), ``api://<string>/<GUID>``,
    ``api://<host.domain>/<string>``, ``https://<domain>/<string>`` and ``https://<string>.<domain>``;
    whether the domain is one of the tenant's verified domains cannot be known offline.
    """
    scheme, _, rest = uri.partition("://")
    host, _, path = rest.partition("/")
    segments = [p for p in path.split("/") if p]
    if scheme.lower() == "api":
        return bool(_GUID.match(host) or (segments and _GUID.match(segments[-1])) or ("." in host and segments))
    if scheme.lower() == "https":
        return "." in host and (bool(segments) or host.count(".") >= 2)
    return False


def identifier_uri_findings(uri: str | None) -> list[Finding]:
    """A configured identifier URI that tenants restricting new URIs would refuse (a warning)."""
    if not uri or identifier_uri_has_tenant_identifier(uri):
        return []
    return [
        Finding(
            (),
            f"{uri} carries no unique tenant identifier: tenants that enforce Entra's "
            "uriAdditionWithoutUniqueTenantIdentifier restriction refuse it when the application is created; "
            "use api://<tenant id>/<name> (the default when unset) or a verified-domain form such as "
            "https://<verified domain>/<name>",
            refused=False,
        )
    ]


WEBHOOK_RECEIVER_NAME = "secure-export"
"""Name of the action group's secure webhook receiver."""


def action_group_findings(email_receivers: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """Deploy-time rules of the action group: unique receiver names, e-mail receiver limits."""
    findings: list[Finding] = []
    if len(email_receivers) > MAX_EMAIL_RECEIVERS:
        findings.append(
            Finding(
                ("email_receivers",),
                f"lists {len(email_receivers)} e-mail receivers; an action group takes at most {MAX_EMAIL_RECEIVERS}",
            )
        )
    seen = {WEBHOOK_RECEIVER_NAME.lower(): "the secure webhook receiver"}
    for index, receiver in enumerate(email_receivers):
        name = str(receiver.get("name") or "")
        if name.lower() in seen:
            findings.append(
                Finding(
                    ("email_receivers", index, "name"),
                    f"{name!r} is already the name of {seen[name.lower()]}; Azure needs every receiver name "
                    "unique within the action group",
                )
            )
        seen.setdefault(name.lower(), f"emailReceivers[{index}]")
        address = str(receiver.get("email_address") or "")
        if len(address) > MAX_EMAIL_ADDRESS_LENGTH:
            findings.append(
                Finding(
                    ("email_receivers", index, "email_address"),
                    f"has {len(address)} characters; Azure takes e-mail addresses of at most "
                    f"{MAX_EMAIL_ADDRESS_LENGTH}",
                )
            )
    return findings


def activity_log_count_findings(activity_log_rules: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """More activity log rules than one subscription can hold (the stack's rules share one)."""
    if len(activity_log_rules) <= MAX_ACTIVITY_LOG_RULES:
        return []
    return [
        Finding(
            (),
            f"declares {len(activity_log_rules)} activity log rules; a subscription holds at most "
            f"{MAX_ACTIVITY_LOG_RULES} active ones (a limit Azure cannot raise), "
            "and all of a stack's rules live in one",
        )
    ]


def metric_rule_findings(rule: Mapping[str, Any]) -> list[Finding]:
    """Deploy-time rules of one metric alert rule (component argument form)."""
    findings: list[Finding] = []
    findings += _one_of(rule, "evaluation_frequency", METRIC_FREQUENCIES, "a metric rule")
    findings += _one_of(rule, "window_size", METRIC_WINDOWS, "a metric rule")
    findings += _multi_resource_alike(rule)
    return findings


def _one_of(rule: Mapping[str, Any], field: str, allowed: tuple[str, ...], kind: str) -> list[Finding]:
    value = rule.get(field)
    if value is None:
        return []
    try:
        seconds = duration_seconds(str(value))
    except ValueError:
        return []  # the config model reports a malformed duration
    if seconds in {duration_seconds(a) for a in allowed}:
        return []
    return [Finding((field,), f"{kind} takes only {', '.join(allowed)}; got {value}")]


def resource_type(resource_id: str) -> str | None:
    """The resource type an ARM id names (``Microsoft.Sql/servers/databases``), None for a subscription or group."""
    parts = resource_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    if "providers" not in lowered:
        return None
    at = len(lowered) - 1 - lowered[::-1].index("providers")
    namespace, rest = parts[at + 1 : at + 2], parts[at + 2 :]
    if not namespace or not rest:
        return None
    return "/".join([namespace[0], *rest[::2]])


def _multi_resource_alike(rule: Mapping[str, Any]) -> list[Finding]:
    # Azure monitors several resources with one rule only when they share subscription, type and region.
    scopes = list(rule.get("scopes") or [])
    if len(scopes) < 2 and all(resource_type(s) is not None for s in scopes):
        return []  # one resource: a single-resource rule
    findings: list[Finding] = []
    subscriptions = {subscription_of(s) for s in scopes}
    if len(subscriptions) > 1:
        findings.append(
            Finding(
                ("scopes",),
                "a rule over several resources must keep them in one subscription, got "
                f"{len(subscriptions)} ({', '.join(sorted(str(s) for s in subscriptions))}); "
                "declare one rule per subscription",
            )
        )
    target = rule.get("target_resource_type")
    if target:
        for index, scope in enumerate(scopes):
            found = resource_type(scope)
            if found is not None and found.lower() != str(target).lower():
                findings.append(
                    Finding(
                        ("scopes", index),
                        f"is a {found}, but the rule's targetResourceType is {target}: a rule over several "
                        "resources watches one resource type",
                    )
                )
    return findings


def activity_log_rule_findings(rule: Mapping[str, Any]) -> list[Finding]:
    """Deploy-time rules of one activity log alert rule (component argument form)."""
    findings: list[Finding] = []
    findings += _service_health_one_subscription(rule)
    return findings


def _is_subscription(scope: str) -> bool:
    parts = scope.strip("/").split("/")
    return len(parts) == 2 and parts[0].lower() == "subscriptions" and bool(parts[1])


def _service_health_one_subscription(rule: Mapping[str, Any]) -> list[Finding]:
    # Azure: ScopeIsInvalid, "The rule scope must contain only one item".
    if rule.get("category") != "ServiceHealth":
        return []
    scopes = list(rule.get("scopes") or [])
    if len(scopes) == 1 and _is_subscription(scopes[0]):
        return []
    return [
        Finding(
            ("scopes",),
            f"a ServiceHealth rule watches exactly one subscription, /subscriptions/<id> (Azure: ScopeIsInvalid, "
            f'"The rule scope must contain only one item"), got {len(scopes)} scope(s); '
            "declare one rule per subscription",
        )
    ]
