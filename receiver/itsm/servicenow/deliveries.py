"""Fired and Resolved deliveries applied to incidents, idempotent per ``(alert_id, condition)``.

Fired opens an incident, or notes an occurrence on the open one (reopening one resolved within the
reopen window); Resolved resolves once every alert noted on the incident has resolved, or records an
already resolved incident when it arrives first. docs/servicenow.md describes each case.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from receiver.alerts.events import AlertEvent, Condition
from receiver.itsm.markers import held_marker, is_held, occurrence_marker, still_firing
from receiver.itsm.servicenow import render
from receiver.itsm.servicenow.client import Row
from receiver.itsm.servicenow.close_code import CloseCodeCheck
from receiver.itsm.servicenow.incidents import (
    INACTIVE_OR_RESOLVED,
    STATE_IN_PROGRESS,
    STATE_RESOLVED,
    IncidentTable,
    is_open,
)
from receiver.itsm.servicenow.settings import ServiceNowSettings

log = logging.getLogger("secure_export.servicenow")


class IncidentDeliveries:
    """Applies one delivery to the incidents of its correlation key (the caller serialises per key)."""

    def __init__(
        self,
        settings: ServiceNowSettings,
        incidents: IncidentTable,
        close_code: CloseCodeCheck,
        *,
        reopen_window: float,
    ) -> None:
        self._settings = settings
        self._incidents = incidents
        self._close_code = close_code
        self._reopen_window = reopen_window

    async def apply(self, event: AlertEvent) -> Row | None:
        """The incident the delivery was applied to, or None when there was nothing to do."""
        if event.condition is Condition.FIRED:
            return await (self._recovered(event) if event.recovery else self._fired(event))
        if event.lifecycle_reason is not None:
            return await self._resolve_for_receiver(event)
        return await self._resolved(event)

    async def _fired(self, event: AlertEvent) -> Row:
        incidents = self._incidents
        found = await incidents.find(event, history=True)
        corr, marker = found.correlation_id, occurrence_marker(event.alert_id, Condition.FIRED)
        incident = found.open or found.resolved
        joining = False
        if incident is None and found.latest is not None and found.latest is not found.closed:
            latest = found.latest
            if (
                str(latest.get("state")) == STATE_RESOLVED
                and not found.others_open
                and self._within_window(latest, event)
            ):
                incident = latest  # the same rule on the same resources, resolved within the window: reopen
            elif is_open(latest):
                markers = await incidents.noted_markers(latest)
                # Open with nothing firing and a held Resolved: flap damping keeps it open on purpose.
                # Without that marker it is another alert's incident mid-resolution: never take it over.
                if not still_firing(markers) and is_held(markers):
                    incident, joining = latest, True
        if incident is None:
            record = await incidents.create(event, corr, marker, follows=found.closed)
            log.info(
                "servicenow incident created",
                extra={
                    "event": "servicenow_incident_created",
                    "number": record.get("number"),
                    "correlation_id": corr,
                    "alert_id": event.alert_id,
                },
            )
            return record
        sys_id = str(incident["sys_id"])
        found_markers = await incidents.noted_markers(incident)
        if marker in found_markers:
            _log_replay(incident, event)
            return incident
        patch: dict[str, Any] = {"work_notes": render.occurrence_note(event, marker)}
        if incident.get("correlation_id") != corr:
            patch["correlation_id"] = corr  # the incident now answers to this alert's key
        # A Resolved incident re-fires within the window: reopen it, unless this very alert already
        # resolved (it arrived before its Fired): then the Fired is history and must not reopen anything.
        if str(incident.get("state")) == STATE_RESOLVED and (
            occurrence_marker(event.alert_id, Condition.RESOLVED) not in found_markers
        ):
            if incident is found.resolved and not self._within_window(incident, event):
                return await incidents.create(event, corr, marker, follows=incident, outside_window=True)
            patch["state"] = STATE_IN_PROGRESS
            reopened = render.reopen_note(incident, event, self._reopen_window)
            patch["work_notes"] = f"{reopened}\n{patch['work_notes']}"
        elif joining:
            patch["work_notes"] = f"Fired again while flapping.\n{patch['work_notes']}"
        await incidents.update(sys_id, patch)
        log.info(
            "servicenow occurrence noted",
            extra={
                "event": "servicenow_occurrence",
                "number": incident.get("number"),
                "alert_id": event.alert_id,
                "reopened": "state" in patch,
            },
        )
        return incident

    async def _resolved(self, event: AlertEvent) -> Row | None:
        incidents = self._incidents
        await self._close_code.check()
        found = await incidents.find(event)
        corr, marker = found.correlation_id, occurrence_marker(event.alert_id, Condition.RESOLVED)
        incident = found.open or found.resolved
        if incident is None:
            if found.exists:
                log.info(
                    "servicenow resolved: incident already closed",
                    extra={"event": "servicenow_already_closed", "correlation_id": corr, "alert_id": event.alert_id},
                )
                return None
            record = await incidents.create(event, corr, marker, resolved=True)
            log.info(
                "servicenow resolved before fired: recorded a resolved incident",
                extra={
                    "event": "servicenow_resolved_before_fired",
                    "number": record.get("number"),
                    "alert_id": event.alert_id,
                },
            )
            return record
        sys_id = str(incident["sys_id"])
        found_markers = await incidents.noted_markers(incident)
        if marker in found_markers:
            _log_replay(incident, event)
            return incident
        firing = still_firing(found_markers | {marker})
        note = f"Azure Monitor sent Resolved for alert {event.alert_id}."
        if firing:
            note += f" {len(firing)} grouped alert(s) still firing; the incident stays open."
        elif event.hold and str(incident.get("state")) not in INACTIVE_OR_RESOLVED:
            note = f"{event.hold}\n{held_marker(event.alert_id)}"
        fields: dict[str, Any] = {"work_notes": f"{note}\n{marker}"}
        # Already Resolved/Closed (by people, or earlier): only keep the group's bookkeeping.
        if not firing and not event.hold and str(incident.get("state")) not in INACTIVE_OR_RESOLVED:
            fields |= {
                "state": STATE_RESOLVED,
                "close_code": self._settings.close_code,
                "close_notes": render.close_notes(event, marker),
            }
        await incidents.update(sys_id, fields)
        log.info(
            "servicenow resolved noted",
            extra={
                "event": "servicenow_resolved",
                "number": incident.get("number"),
                "alert_id": event.alert_id,
                "incident_resolved": "state" in fields,
                "still_firing": len(firing),
                "held": bool(event.hold),
            },
        )
        return incident

    async def _recovered(self, event: AlertEvent) -> Row | None:
        """Resource health is ``Available`` again: resolve the open incident of that rule and resource."""
        found = await self._incidents.find(event, history=True)
        latest = found.latest
        if latest is None or not is_open(latest):
            log.info(
                "servicenow recovery with nothing open",
                extra={"event": "servicenow_recovery_nothing_open", "alert_id": event.alert_id},
            )
            return None
        where = ", ".join(event.configuration_items) or ", ".join(event.target_ids) or "the resource"
        return await self._resolve_whole(
            event, latest, f"Resolved: resource health reports {where} Available again (alert {event.alert_id})."
        )

    async def _resolve_for_receiver(self, event: AlertEvent) -> Row | None:
        """A resolution the receiver made (stateless TTL, quiet after flapping): the key's open incident."""
        found = await self._incidents.find(event)
        if found.open is None:
            return None  # resolved meanwhile, or never opened: nothing to do (a replay lands here too)
        return await self._resolve_whole(event, found.open, event.lifecycle_note or "Resolved by secure-export.")

    async def _resolve_whole(self, event: AlertEvent, incident: Row, note: str) -> Row:
        await self._close_code.check()
        marker = occurrence_marker(event.alert_id, Condition.RESOLVED)
        markers = await self._incidents.noted_markers(incident)
        # Every alert still firing on it is resolved with it: its Resolved marker is noted too.
        resolved_markers = [f"semark-{digest}-resolved" for digest in sorted(still_firing(markers))]
        references = "\n".join([*resolved_markers, marker])
        await self._incidents.update(
            str(incident["sys_id"]),
            {
                "work_notes": f"{note}\n{references}",
                "state": STATE_RESOLVED,
                "close_code": self._settings.close_code,
                "close_notes": f"{note}\nReference: {marker}",
            },
        )
        log.info(
            "servicenow incident resolved by the receiver",
            extra={
                "event": "servicenow_lifecycle_resolved",
                "number": incident.get("number"),
                "alert_id": event.alert_id,
                "reason": event.lifecycle_reason or "recovered",
            },
        )
        return incident

    def _within_window(self, incident: Mapping[str, Any], event: AlertEvent) -> bool:
        resolved_at = _servicenow_time(incident.get("resolved_at"))
        if resolved_at is None or self._reopen_window <= 0:
            return False
        fired_at = event.fired_at or datetime.now(UTC)
        return (fired_at - resolved_at).total_seconds() <= self._reopen_window


def _log_replay(incident: Row, event: AlertEvent) -> None:
    log.info(
        f"servicenow {str(event.condition).lower()} already noted (replay)",
        extra={
            "event": "servicenow_replay",
            "number": incident.get("number"),
            "alert_id": event.alert_id,
            "condition": str(event.condition),
        },
    )


def _servicenow_time(value: Any) -> datetime | None:
    """``2026-11-26 06:10:00`` (the Table API's UTC, with ``sysparm_display_value=false``) as a datetime."""
    try:
        return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
