"""The text ServiceNow records carry: titles, descriptions, work notes, close notes, ``additional_info``.

Every note ends with the delivery's occurrence marker (:mod:`receiver.itsm.markers`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from receiver.alerts import text as alert_text
from receiver.alerts.events import AlertEvent, Condition
from secure_export.durations import format_duration

SHORT_DESCRIPTION_LIMIT = 160


def short_description(event: AlertEvent) -> str:
    """``[Sev1] cpu-high on vm-web-01`` within ``short_description``'s length."""
    return alert_text.summary(event, SHORT_DESCRIPTION_LIMIT)


def description(event: AlertEvent, ci_lines: Sequence[str]) -> str:
    """The alert in full, with one line per CMDB lookup."""
    return alert_text.description(event, ci_lines)


def occurrence_note(event: AlertEvent, marker: str, *, opened: bool = False) -> str:
    """The work note of a delivery: what Azure Monitor sent, and when."""
    what = "Opened for" if opened else "Occurrence of"
    when = f" at {event.fired_at.isoformat()}" if event.fired_at else ""
    if event.condition is Condition.RESOLVED:
        return f"Azure Monitor sent Resolved for alert {event.alert_id}{when} before its Fired.\n{marker}"
    summary = f"\n{event.condition_summary}" if event.condition_summary else ""
    return f"{what} Azure Monitor alert {event.alert_id} (Fired{when}).{summary}\n{marker}"


def close_notes(event: AlertEvent, marker: str, *, before_fired: bool = False) -> str:
    """``close_notes`` of an incident Azure Monitor resolved."""
    when = f" at {event.resolved_at.isoformat()}" if event.resolved_at else ""
    text = f"Resolved by Azure Monitor: monitorCondition=Resolved{when} for alert {event.alert_id}."
    if before_fired:
        text += " Resolved arrived before Fired was applied; recorded as resolved so that the late Fired opens nothing."
    # The marker here too: close_notes reads back through the Table API even where an ACL
    # hides sys_journal_field, so a late Fired still knows its alert already resolved.
    return f"{text}\nReference: {marker}"


def reopen_note(incident: Mapping[str, Any], event: AlertEvent, reopen_window: float) -> str:
    """The work note of an incident a Fired reopens within the reopen window."""
    return (
        f"Reopened: Azure Monitor fired alert {event.alert_id} again within the reopen window "
        f"({format_duration(reopen_window)}, SECURE_EXPORT_REOPEN_WINDOW) after this incident was resolved "
        f"at {incident.get('resolved_at')} UTC."
    )


def additional_info(event: AlertEvent) -> dict[str, str]:
    """The alert's essentials as ``em_event.additional_info`` wants them: every value a string."""
    info: dict[str, str] = {}
    for key, value in event.essentials.items():
        if value is None:
            continue
        if isinstance(value, str):
            info[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            info[key] = ",".join(value)
        else:
            info[key] = json.dumps(value, sort_keys=True, default=str)
    info.setdefault("alertId", event.alert_id)
    info.setdefault("alertRule", event.rule)
    info.setdefault("monitorCondition", str(event.condition))
    if event.severity:
        info.setdefault("severity", event.severity)
    if event.target_ids:
        info.setdefault("alertTargetIDs", ",".join(event.target_ids))
    if event.configuration_items:
        info.setdefault("configurationItems", ",".join(event.configuration_items))
    if event.investigation_link:
        info.setdefault("investigationLink", event.investigation_link)
    if event.condition_summary:
        info["conditionSummary"] = event.condition_summary
    info["correlationKey"] = event.correlation_key
    return info
