"""The project's guardrails, once: used by the Pulumi policy pack (policy/) and by ``secure-export plan --policy``.

Each rule reads a neutral view of a resource (:class:`Resource`: type, name, input properties,
the names it depends on, the options the engine exposes) and returns messages, one per violation.
Standard library only: the policy pack runs in a virtual environment of its own. docs/review.md
lists the rules, their levels and why each exists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from secure_export.contract import AZNS_AAD_WEBHOOK_CLIENT_ID, SECURE_WEBHOOK_ROLE

ACTION_GROUP = "azure-native:monitor:ActionGroup"
METRIC_ALERT = "azure-native:monitor:MetricAlert"
LOG_ALERT = "azure-native:monitor:ScheduledQueryRule"
CONTAINER_APP = "azure-native:app:ContainerApp"
APPLICATION = "azuread:index/application:Application"
SERVICE_PRINCIPAL = "azuread:index/servicePrincipal:ServicePrincipal"

Level = Literal["mandatory", "advisory"]


class NotApplicable(Exception):
    """The rule cannot judge this resource with what the engine shows (the reason says why)."""


@dataclass(frozen=True)
class Resource:
    """A resource as a rule sees it. ``options`` lacks a key when the engine does not expose that option."""

    type: str
    name: str
    props: Mapping[str, Any]
    depends_on: frozenset[str] = frozenset()
    options: Mapping[str, bool] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Violation:
    """One broken rule: which rule, at which level, on which resource, and what to do."""

    policy: str
    level: Level
    resource: Resource
    message: str


ResourceCheck = Callable[[Resource], list[str]]
StackCheck = Callable[[Sequence[Resource]], list[tuple[Resource, str]]]


@dataclass(frozen=True)
class Rule:
    """A guardrail: either a per-resource check for some types, or a check over the whole stack."""

    name: str
    description: str
    level: Level
    types: tuple[str, ...] = ()
    check: ResourceCheck | None = None
    stack_check: StackCheck | None = None


def _list(value: Any) -> list[Any]:
    # The policy SDK hands lists and maps over as read-only proxies (Sequence, Mapping) that raise
    # on values unknown during preview; the engine then reports the rule as not yet decidable.
    return list(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _receivers(resource: Resource) -> list[tuple[int, Mapping[str, Any]]]:
    return [(i, _map(w)) for i, w in enumerate(_list(resource.props.get("webhookReceivers")))]


def _label(index: int, receiver: Mapping[str, Any]) -> str:
    name = receiver.get("name")
    return f"webhookReceivers[{index}]" + (f" ({name})" if name else "")


def check_webhook_entra_auth(resource: Resource) -> list[str]:
    """Every webhook receiver is a secure webhook: Entra ID auth with the application's object id, URI and tenant."""
    out = []
    for index, receiver in _receivers(resource):
        if receiver.get("useAadAuth") is not True:
            out.append(
                f"{_label(index, receiver)} does not use Entra ID auth: set useAadAuth: true with objectId, "
                "identifierUri and tenantId of the receiver's application (a plain webhook carries no token "
                "the ITSM tool could check)"
            )
            continue
        missing = [key for key in ("objectId", "identifierUri", "tenantId") if not receiver.get(key)]
        if missing:
            out.append(f"{_label(index, receiver)} uses Entra ID auth without {', '.join(missing)}")
    return out


def check_webhook_common_schema(resource: Resource) -> list[str]:
    """Every webhook receiver sends the common alert schema (the receiver and ITSM tools parse only that)."""
    return [
        f"{_label(index, receiver)} does not send the common alert schema: set useCommonAlertSchema: true "
        "(the receiver and ServiceNow's Secure Export accept only that schema)"
        for index, receiver in _receivers(resource)
        if receiver.get("useCommonAlertSchema") is not True
    ]


def _secure_groups(resources: Iterable[Resource]) -> dict[str, Resource]:
    return {
        r.name: r
        for r in resources
        if r.type == ACTION_GROUP and any(w.get("useAadAuth") is True for _, w in _receivers(r))
    }


def _action_group_ids(resource: Resource) -> set[str]:
    actions = resource.props.get("actions")
    if resource.type == METRIC_ALERT:
        return {str(a.get("actionGroupId")) for a in map(_map, _list(actions)) if a.get("actionGroupId")}
    return {str(i) for i in _list(_map(actions).get("actionGroups")) if i}


def check_alerts_stateful(resources: Sequence[Resource]) -> list[tuple[Resource, str]]:
    """Metric and log alert rules that notify a secure-webhook action group resolve themselves (autoMitigate)."""
    groups = _secure_groups(resources)
    ids = {str(g.outputs.get("id")): name for name, g in groups.items() if g.outputs.get("id")}
    out = []
    for resource in resources:
        if resource.type not in (METRIC_ALERT, LOG_ALERT):
            continue
        wired = sorted(
            (resource.depends_on & groups.keys()) | {ids[i] for i in _action_group_ids(resource) if i in ids}
        )
        if wired and resource.props.get("autoMitigate") is not True:
            out.append(
                (
                    resource,
                    f"notifies the secure-webhook action group {', '.join(wired)} but is stateless: set "
                    "autoMitigate: true so that Azure sends Resolved and the work item closes",
                )
            )
    return out


def check_ingress_https_only(resource: Resource) -> list[str]:
    """Container app ingress accepts HTTPS only."""
    ingress = _map(_map(resource.props.get("configuration")).get("ingress"))
    if ingress and ingress.get("allowInsecure") is True:
        return ["configuration.ingress.allowInsecure is true: plain HTTP would carry bearer tokens; set it to false"]
    return []


_SECRET_NAME = re.compile(
    r"(PASS(WORD|WD)?|PWD|SECRET|TOKEN|API[_-]?KEY|ACCESS[_-]?KEY|PRIVATE[_-]?KEY|CONNECTION[_-]?STRING|CREDENTIAL)",
    re.IGNORECASE,
)
_SECRET_VALUE = (
    ("a masked Pulumi secret", re.compile(r"^\[secret\]$")),
    ("a URL with a password", re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)),
    ("a connection string with a key or password", re.compile(r"(AccountKey|SharedAccessKey|Password|Pwd)=", re.I)),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a JSON web token", re.compile(r"^eyJ[\w-]{8,}\.[\w-]{8,}\.")),
)


def check_env_no_plain_secrets(resource: Resource) -> list[str]:
    """No container environment value looks like a secret; secrets go through secretRef."""
    template = _map(resource.props.get("template"))
    out = []
    for kind in ("containers", "initContainers"):
        for c_index, container in enumerate(map(_map, _list(template.get(kind)))):
            for e_index, entry in enumerate(map(_map, _list(container.get("env")))):
                value = entry.get("value")
                if not isinstance(value, str) or not value:
                    continue
                name = str(entry.get("name") or "")
                why = "its name says it is a secret" if _SECRET_NAME.search(name) else None
                for label, pattern in _SECRET_VALUE:
                    if why is None and pattern.search(value):
                        why = f"its value looks like {label}"
                if why:
                    out.append(
                        f"template.{kind}[{c_index}].env[{e_index}] ({name}) is a plain value and {why}: hold it "
                        "in configuration.secrets and refer to it with secretRef"
                    )
    return out


def check_webhook_role_allows_applications(resource: Resource) -> list[str]:
    """The application's ActionGroupsSecureWebhook role can be assigned to applications (Azure Monitor's AzNS)."""
    out = []
    for index, role in enumerate(map(_map, _list(resource.props.get("appRoles")))):
        if role.get("value") != SECURE_WEBHOOK_ROLE:
            continue
        if "Application" not in _list(role.get("allowedMemberTypes")):
            out.append(
                f"appRoles[{index}] ({SECURE_WEBHOOK_ROLE}) does not allow member type Application: the AzNS AAD "
                "Webhook service principal could not be assigned the role, and Azure Monitor gets no token"
            )
        if role.get("enabled") is False:
            out.append(f"appRoles[{index}] ({SECURE_WEBHOOK_ROLE}) is disabled: tokens would carry no role")
    return out


def check_azns_retained(resource: Resource) -> list[str]:
    """Deleting the stack leaves Microsoft's AzNS AAD Webhook service principal in place (other stacks use it)."""
    if resource.props.get("clientId") != AZNS_AAD_WEBHOOK_CLIENT_ID:
        return []
    if resource.options.get("retainOnDelete") is True or resource.options.get("protect") is True:
        return []
    if "retainOnDelete" not in resource.options:
        raise NotApplicable(
            "the engine does not show the retainOnDelete option; `secure-export plan --policy` checks it"
        )
    return [
        "the AzNS AAD Webhook service principal is shared by every secure webhook in the tenant: declare it "
        "with retain_on_delete=True so that destroying this stack does not break the others"
    ]


RULES: tuple[Rule, ...] = (
    Rule(
        "action-group-webhook-entra-auth",
        "Webhook receivers of action groups use Entra ID auth (secure webhook).",
        "mandatory",
        (ACTION_GROUP,),
        check_webhook_entra_auth,
    ),
    Rule(
        "action-group-webhook-common-schema",
        "Webhook receivers of action groups send the common alert schema.",
        "mandatory",
        (ACTION_GROUP,),
        check_webhook_common_schema,
    ),
    Rule(
        "alert-rules-stateful",
        "Metric and log alert rules wired to a secure-webhook action group are stateful (autoMitigate).",
        "mandatory",
        stack_check=check_alerts_stateful,
    ),
    Rule(
        "container-app-https-only",
        "Container app ingress is HTTPS-only.",
        "mandatory",
        (CONTAINER_APP,),
        check_ingress_https_only,
    ),
    Rule(
        "container-env-no-plain-secrets",
        "No container environment value looks like a secret; secrets use secretRef.",
        "mandatory",
        (CONTAINER_APP,),
        check_env_no_plain_secrets,
    ),
    Rule(
        "webhook-app-role-allows-applications",
        "The webhook application's ActionGroupsSecureWebhook role allows member type Application.",
        "mandatory",
        (APPLICATION,),
        check_webhook_role_allows_applications,
    ),
    Rule(
        "azns-service-principal-retained",
        "The AzNS AAD Webhook service principal is retained when the stack is deleted.",
        "advisory",
        (SERVICE_PRINCIPAL,),
        check_azns_retained,
    ),
)
"""Every rule, in the order reports list them."""


def evaluate(resources: Sequence[Resource], rules: Iterable[Rule] = RULES) -> list[Violation]:
    """Run every rule over a stack's resources and return the violations (not-applicable rules say nothing)."""
    found: list[Violation] = []
    for rule in rules:
        if rule.stack_check is not None:
            found += [Violation(rule.name, rule.level, r, m) for r, m in rule.stack_check(resources)]
            continue
        assert rule.check is not None
        for resource in resources:
            if resource.type not in rule.types:
                continue
            try:
                messages = rule.check(resource)
            except NotApplicable:
                continue
            found += [Violation(rule.name, rule.level, resource, m) for m in messages]
    return found
