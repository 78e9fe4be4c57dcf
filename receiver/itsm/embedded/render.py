"""The text of embedded work items: titles, descriptions and the notes each change adds (either store)."""

from __future__ import annotations

from typing import Literal

from receiver.alerts.events import AlertEvent
from receiver.itsm.embedded.targets import resource_name, unique_names
from secure_export.durations import format_duration

MAX_NOTE_CHARS = 4000
"""An operator's note is cut to this length."""


def title(event: AlertEvent) -> str:
    """``[Sev2] rule on ci-1, ci-2``: severity, rule and (up to three of) what is affected."""
    rule = event.rule or "Unnamed alert rule"
    # Name what is affected: the CIs, else the first target if it is a resource (a bare
    # subscription id, as service health sends, says nothing to a person).
    targets = unique_names(event.configuration_items) or [
        resource_name(t) for t in event.target_ids[:1] if "/providers/" in t.lower()
    ]
    on = f" on {', '.join(targets[:3])}" if targets else ""
    return f"[{event.severity or 'No severity'}] {rule}{on}"


def description(event: AlertEvent) -> str:
    """What fired, where, and how to find it in Azure; says so where Azure sent nothing."""
    lines = [
        f"Azure Monitor alert rule {event.rule or '(unnamed)'} fired.",
        f"Severity: {event.severity or 'none sent by Azure'}",
        f"Signal: {event.signal_type or 'unknown'} ({event.monitoring_service or 'unknown service'})",
    ]
    if event.condition_summary:
        lines.append(f"Condition: {event.condition_summary}")
    if event.target_ids:
        lines.append("Target resource(s):")
        lines.extend(f"  {target}" for target in event.target_ids)
    else:
        lines.append("Target resource(s): none sent by Azure")
    if event.configuration_items:
        lines.append(f"Configuration items: {', '.join(unique_names(event.configuration_items))}")
    if event.description:
        lines.append(f"Rule description: {event.description}")
    if event.investigation_link:
        lines.append(f"Investigation link: {event.investigation_link}")
    else:
        lines.append("Investigation link: none sent by Azure; find the alert in Azure Monitor by its id.")
    lines.append(f"Alert id: {event.alert_id}")
    return "\n".join(lines)


# -- notes ---------------------------------------------------------------------------------------


def opened_note(event: AlertEvent, fired_at: str) -> str:
    """A new item's first note."""
    return f"Opened by Azure Monitor: alert {event.alert_id} fired at {fired_at}."


def routed_note(event: AlertEvent) -> str | None:
    """Where the routing file sent a new item (``None`` when no route names a group)."""
    if event.route is None or not event.route.assignment_group:
        return None
    return f"Routed to {event.route.assignment_group} by {event.route.rule} of the routing file."


def resolved_first_note(early_resolved_at: str) -> str:
    """A new item whose alert's Resolved was applied before its Fired."""
    return (
        f"Resolved at once: Azure's Resolved ({early_resolved_at}) arrived before this Fired "
        "(deliveries were retried out of order)."
    )


def occurrence_note(event: AlertEvent, fired_at: str, early_resolved_at: str | None) -> str:
    """One more alert grouped on an open item."""
    text = f"New occurrence: alert {event.alert_id} fired at {fired_at}."
    if early_resolved_at:
        text += f" Its Resolved ({early_resolved_at}) arrived first, so it does not keep this item open."
    return text


def flapping_note(event: AlertEvent, fired_at: str) -> str:
    """An alert joining an item held open by flap damping."""
    return f"Fired again while flapping: alert {event.alert_id} at {fired_at}."


def reopened_note(event: AlertEvent, fired_at: str, gap: float, window: float) -> str:
    """An item Azure resolved ``gap`` seconds before, brought back by ``event``."""
    return (
        f"Reopened: alert {event.alert_id} fired at {fired_at}, {format_duration(gap)} after Azure resolved this "
        f"item (reopen window {format_duration(window)}, SECURE_EXPORT_REOPEN_WINDOW)."
    )


def follows_closed_note(number: str) -> str:
    """A new item whose predecessor of the same rule and targets a person closed."""
    return f"Follows {number}, which a person closed; closed items are never reopened."


def still_firing_note(event: AlertEvent, resolved_at: str, still_firing: int) -> str:
    """One alert of an item resolved while others grouped on it still fire."""
    return f"Alert {event.alert_id} resolved at {resolved_at}; {still_firing} grouped alert(s) still firing."


def resolved_note(event: AlertEvent, resolved_at: str) -> str:
    """An item resolved by its last alert's Resolved."""
    return f"Resolved by Azure Monitor: alert {event.alert_id} resolved at {resolved_at}."


def receiver_resolution_note(event: AlertEvent) -> str:
    """An item resolved whole: by a resource health recovery, or by the receiver (TTL, flap quiet)."""
    if event.recovery:
        where = ", ".join(event.configuration_items) or ", ".join(event.target_ids) or "the resource"
        return f"Resolved: resource health reports {where} Available again (alert {event.alert_id})."
    return event.lifecycle_note or f"Resolved by secure-export ({event.lifecycle_reason})."


def operator_note(action: Literal["resolve", "close"], who: str, note: str) -> str:
    """An operator's resolve or close, with who acted (cut to :data:`MAX_NOTE_CHARS`)."""
    return f"{'Resolved' if action == 'resolve' else 'Closed'} by {who}: {note}"[:MAX_NOTE_CHARS]
