"""What a backend receives: one accepted delivery as an :class:`AlertEvent`, built from the parsed alert.

Also the correlation key that groups deliveries into one work item, and the marks of the Resolved
rows the receiver stores itself (docs/routing.md, lifecycle).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from receiver.alerts.schema import AlertParseError, CommonAlert, Essentials, parse_alert
from receiver.alerts.summary import condition_summary

if TYPE_CHECKING:
    from secure_export.routing import RouteDecision

log = logging.getLogger(__name__)

SYNTHETIC_ALERT_PREFIX = "secure-export-lifecycle/"
"""Alert ids of the Resolved rows the receiver stores itself; refused from callers."""
LIFECYCLE_KEY = "secureExportLifecycle"
"""Top-level key of a Resolved the receiver stores itself (``receiver.dispatch.lifecycle``): ``{"reason": ...}``."""

RECOVERY_STATUSES = frozenset({"available"})
"""Resource health statuses that mean the resource recovered (docs/routing.md, lifecycle)."""


class Condition(enum.StrEnum):
    """``essentials.monitorCondition`` of the common alert schema."""

    FIRED = "Fired"
    RESOLVED = "Resolved"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One accepted delivery, as a backend needs it (built by the dispatcher from an inbox row)."""

    alert_id: str
    """``essentials.alertId``: the Azure alert instance, shared by its Fired and Resolved."""
    condition: Condition
    correlation_key: str
    """What groups deliveries into one work item: the alert id under ``SECURE_EXPORT_CORRELATION=alert``,
    rule and target under ``rule-target``."""
    rule: str
    """``essentials.alertRule`` (the rule's name)."""
    severity: str | None
    """``Sev0``..``Sev4``; ``None`` where Azure sends none (cost alerts)."""
    signal_type: str | None = None
    monitoring_service: str | None = None
    target_ids: tuple[str, ...] = ()
    """``essentials.alertTargetIDs``: Azure resource ids."""
    configuration_items: tuple[str, ...] = ()
    """``essentials.configurationItems``: CI names to bind in the CMDB."""
    description: str | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    investigation_link: str | None = None
    """``essentials.investigationLink`` when Azure sends one (newer payloads)."""
    condition_summary: str | None = None
    """A short human-readable summary of what crossed which threshold, from ``alertContext``."""
    essentials: Mapping[str, Any] = field(default_factory=dict)
    """The raw ``essentials`` object, for backends that forward it (ServiceNow ``additional_info``)."""
    custom_properties: Mapping[str, str] = field(default_factory=dict)
    """``data.customProperties`` of the alert (routing matches on them)."""
    lifecycle_key: str = ""
    """Rule and targets (the ``rule-target`` key) whatever the correlation mode: the reopen window
    and flap damping look for an earlier item of the same rule on the same resources by it."""
    route: RouteDecision | None = None
    """Assignment group and fields from the routing file (set by the dispatcher); ``None``: unrouted."""
    lifecycle_reason: str | None = None
    """Why the receiver itself resolves this item (``stateless-ttl``, ``flap-quiet``, ``recovered``),
    for a Resolved it made; ``None`` for what Azure sent."""
    lifecycle_note: str | None = None
    """The note the backend writes when it resolves for ``lifecycle_reason``."""
    hold: str | None = None
    """For a Resolved of a flapping rule (``receiver.dispatch.lifecycle``): the note to write instead of resolving."""
    recovery: bool = False
    """A Fired that reports a recovery (resource health back to ``Available``): it resolves the
    open item of the same rule and resource and never opens one."""


class UnusableRow(Exception):
    """A stored body that cannot become an :class:`AlertEvent` (parked at once)."""


def _text(value: str | None) -> str | None:
    return value if value else None


def _strings(values: list[str] | None) -> tuple[str, ...]:
    return tuple(value for value in values or () if value)


def correlation_key(essentials: Essentials, mode: str) -> str:
    """The key that groups deliveries into one work item.

    ``alert``: the alert id. ``rule-target``: the alert rule (id, else name) and the sorted target
    resource ids, lower-cased.
    """
    if mode != "rule-target":
        return essentials.alert_id
    rule = _text(essentials.alert_rule_id) or _text(essentials.alert_rule) or ""
    targets = sorted({target.strip().lower() for target in _strings(essentials.alert_target_ids)})
    if not rule and not targets:
        # Nothing to group by: fall back to the alert itself rather than lumping strangers together.
        return essentials.alert_id
    return f"{rule.strip().lower()}|{','.join(targets)}"


def is_recovery(essentials: Essentials, context: Mapping[str, Any] | None) -> bool:
    """A resource health event that reports the resource ``Available`` again."""
    if (essentials.monitoring_service or "").casefold() != "resource health":
        return False
    properties = context.get("properties") if context is not None else None
    status = properties.get("currentHealthStatus") if isinstance(properties, dict) else None
    return isinstance(status, str) and status.strip().casefold() in RECOVERY_STATUSES


def event_from_body(body: bytes, mode: str) -> AlertEvent:
    """The event of a stored request body (a row loaded from the inbox rather than handed over)."""
    try:
        alert = parse_alert(body)
    except AlertParseError as error:
        raise UnusableRow(f"stored alert cannot be read: {error.detail}") from None
    return event_from_alert(alert, mode)


def event_from_alert(alert: CommonAlert, mode: str) -> AlertEvent:
    """Turn a parsed alert into the :class:`AlertEvent` a backend receives."""
    essentials = alert.essentials
    condition = Condition(essentials.monitor_condition)
    summary = None
    try:
        summary = condition_summary(alert)
    except Exception as error:  # noqa: BLE001 - a summary is a nicety, never a reason to fail
        log.debug("no condition summary", extra={"event": "summary_failed", "error": str(error)})
    custom = alert.data.custom_properties
    # Only rows the receiver stored itself carry a lifecycle block (the request path refuses the prefix).
    lifecycle = alert.raw.get(LIFECYCLE_KEY) if essentials.alert_id.startswith(SYNTHETIC_ALERT_PREFIX) else None
    lifecycle = lifecycle if isinstance(lifecycle, dict) else {}
    own_key = lifecycle.get("key")
    return AlertEvent(
        alert_id=essentials.alert_id,
        condition=condition,
        # A Resolved the receiver stored itself names the key of the item it resolves.
        correlation_key=own_key if isinstance(own_key, str) and own_key else correlation_key(essentials, mode),
        rule=_text(essentials.alert_rule) or "",
        severity=essentials.severity,
        signal_type=_text(essentials.signal_type),
        monitoring_service=_text(essentials.monitoring_service),
        target_ids=_strings(essentials.alert_target_ids),
        configuration_items=_strings(essentials.configuration_items),
        description=_text(essentials.description),
        fired_at=essentials.fired_date_time,
        resolved_at=essentials.resolved_date_time,
        investigation_link=_text(essentials.investigation_link),
        condition_summary=summary,
        essentials=dict(alert.raw["data"]["essentials"]),
        custom_properties={str(k): str(v) for k, v in custom.items() if v is not None} if custom else {},
        lifecycle_key=correlation_key(essentials, "rule-target"),
        lifecycle_reason=_lifecycle_text(lifecycle.get("reason")),
        lifecycle_note=_lifecycle_text(lifecycle.get("note")),
        recovery=condition is Condition.FIRED and is_recovery(essentials, alert.data.alert_context),
    )


def _lifecycle_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
