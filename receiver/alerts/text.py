"""The text an alert becomes in an ITSM tool: a one-line summary and a description, the same for every backend."""

from __future__ import annotations

from collections.abc import Sequence

from receiver.alerts.events import AlertEvent


def summary(event: AlertEvent, limit: int) -> str:
    """``[Sev1] cpu-high on vm-web-01``, cut to ``limit`` characters."""
    where = next(iter(event.configuration_items), None) or (
        event.target_ids[0].rstrip("/").rsplit("/", 1)[-1] if event.target_ids else None
    )
    text = f"[{event.severity or 'no severity'}] {event.rule}" + (f" on {where}" if where else "")
    return text[:limit]


def description(event: AlertEvent, ci_lines: Sequence[str]) -> str:
    """Rule, condition, severity, signal, targets, values, times, link, alert id and the CI lookups."""
    lines = [
        f"Azure Monitor alert rule: {event.rule}",
        f"Condition: {event.condition}",
        f"Severity: {event.severity or 'none'}",
    ]
    if event.signal_type or event.monitoring_service:
        lines.append(f"Signal: {event.signal_type or '?'} ({event.monitoring_service or '?'})")
    lines += [f"Target: {target}" for target in event.target_ids]
    if event.condition_summary:
        lines.append(f"Values: {event.condition_summary}")
    if event.description:
        lines.append(f"Rule description: {event.description}")
    if event.fired_at:
        lines.append(f"Fired at: {event.fired_at.isoformat()}")
    if event.resolved_at:
        lines.append(f"Resolved at: {event.resolved_at.isoformat()}")
    if event.investigation_link:
        lines.append(f"Investigate: {event.investigation_link}")
    lines.append(f"Alert ID: {event.alert_id}")
    if ci_lines:
        lines.append("Configuration items:")
        lines += [f"  - {line}" for line in ci_lines]
    return "\n".join(lines)
