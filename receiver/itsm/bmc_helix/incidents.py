"""Incidents in BMC Helix ITSM: create, note, reopen and resolve, idempotent per (alert, condition).

Each change carries its occurrence marker in the same request, before the work log entry that
repeats it, so a replay after a crash changes nothing. docs/bmc-helix.md, "What one alert does".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from receiver.alerts import text as alert_text
from receiver.alerts.events import AlertEvent, Condition
from receiver.itsm.base import PermanentBackendError
from receiver.itsm.bmc_helix import qualification as q
from receiver.itsm.bmc_helix.client import ArClient
from receiver.itsm.bmc_helix.cmdb import CiFinder
from receiver.itsm.bmc_helix.routing import incident_fields, routed
from receiver.itsm.bmc_helix.settings import BmcSettings
from receiver.itsm.markers import correlation_id, markers_in, occurrence_marker, still_firing

log = logging.getLogger("secure_export.bmc_helix")

CREATE_FORM = "HPD:IncidentInterface_Create"
INCIDENT_FORM = "HPD:IncidentInterface"
WORKLOG_FORM = "HPD:WorkLog"
RESOLVED = "Resolved"
REOPENED = "Assigned"
FINISHED = ("Closed", "Cancelled")
SUMMARY_LIMIT = 100
"""``Description`` (the incident's and a work log entry's summary) holds 100 characters."""
_WORKLOG_PAGE = 200
_WORKLOG_PAGES = 25


class IncidentDesk:
    """Applies Fired and Resolved deliveries to BMC Helix incidents."""

    def __init__(self, settings: BmcSettings, client: ArClient, cmdb: CiFinder) -> None:
        self._settings = settings
        self._client = client
        self._cmdb = cmdb

    async def fired(self, event: AlertEvent) -> str:
        """Open an incident, or note an occurrence on the open one (reopening it when it was resolved); its number."""
        corr = correlation_id(event.correlation_key)
        marker = occurrence_marker(event.alert_id, Condition.FIRED)
        incident = await self._open_incident(corr)
        if incident is None:
            number = await self._create(event, corr, marker)
            log.info(
                "bmc incident created",
                extra={
                    "event": "bmc_incident_created",
                    "number": number,
                    "correlation_id": corr,
                    "alert_id": event.alert_id,
                },
            )
            return number
        number = str(incident["Incident Number"])
        in_logs, in_fields = await self._markers(incident)
        if marker in in_logs | in_fields:
            _log_replay(number, event)
            return number
        reopen = incident.get("Status") == RESOLVED and (
            occurrence_marker(event.alert_id, Condition.RESOLVED) not in in_logs | in_fields
        )
        if reopen:
            # Back to Assigned when a group owns it (BMC requires one for that status), else New.
            status = REOPENED if incident.get("Assigned Group") else "New"
            await self._client.update(
                INCIDENT_FORM, str(incident["Request ID"]), {"Status": status, "Status_Reason": None}
            )
        await self._work_log(number, f"Occurrence: {alert_text.summary(event, 80)}", _occurrence_note(event, marker))
        log.info(
            "bmc occurrence noted",
            extra={"event": "bmc_occurrence", "number": number, "alert_id": event.alert_id, "reopened": reopen},
        )
        return number

    async def resolved(self, event: AlertEvent) -> str | None:
        """Resolve the incident once none of its alerts is still firing; remember a Resolved that came first.

        Returns the incident's number (``None`` when the only incident is already closed)."""
        corr = correlation_id(event.correlation_key)
        marker = occurrence_marker(event.alert_id, Condition.RESOLVED)
        incident = await self._open_incident(corr)
        if incident is None:
            if await self._any_incident(corr):
                log.info(
                    "bmc resolved: incident already closed",
                    extra={"event": "bmc_already_closed", "correlation_id": corr, "alert_id": event.alert_id},
                )
                return None
            number = await self._create(event, corr, marker, resolved=True)
            log.info(
                "bmc resolved before fired: recorded a resolved incident",
                extra={"event": "bmc_resolved_before_fired", "number": number, "alert_id": event.alert_id},
            )
            return number
        number = str(incident["Incident Number"])
        in_logs, in_fields = await self._markers(incident)
        if marker in in_logs:
            _log_replay(number, event)
            return number
        if marker in in_fields:
            # Resolved before a crash; only the work log entry that keeps the marker is missing.
            await self._work_log(number, "Resolved by Azure Monitor", _resolved_note(event, marker, 0))
            return number
        firing = still_firing(in_logs | in_fields | {marker})
        resolve = not firing and incident.get("Status") not in (RESOLVED, *FINISHED)
        if resolve:
            await self._client.update(
                INCIDENT_FORM,
                str(incident["Request ID"]),
                {
                    "Status": RESOLVED,
                    "Status_Reason": self._settings.resolved_status_reason,
                    "Resolution": _resolution(event, marker),
                },
            )
        await self._work_log(number, "Resolved by Azure Monitor", _resolved_note(event, marker, len(firing)))
        log.info(
            "bmc resolved noted",
            extra={
                "event": "bmc_resolved",
                "number": number,
                "alert_id": event.alert_id,
                "incident_resolved": resolve,
                "still_firing": len(firing),
            },
        )
        return number

    # -- incidents ---------------------------------------------------------------------------

    def _fields(self) -> list[str]:
        return [
            "Request ID",
            "Incident Number",
            "Status",
            "Assigned Group",
            self._settings.correlation_field,
            "Detailed Decription",
            "Resolution",
        ]

    async def _open_incident(self, corr: str) -> dict[str, Any] | None:
        field = self._settings.correlation_field
        condition = q.all_of(q.equals(field, corr), *(q.not_equals("Status", status) for status in FINISHED))
        rows = await self._client.entries(INCIDENT_FORM, condition, self._fields())
        matching = [
            row
            for row in rows
            if row.get(field) == corr
            and row.get("Status") not in FINISHED
            and row.get("Request ID")
            and row.get("Incident Number")
        ]
        if len(matching) > 1:
            numbers = ", ".join(str(row.get("Incident Number")) for row in matching)
            raise PermanentBackendError(
                f"BMC holds more than one open incident with {field} {corr} ({numbers}); "
                "resolve or cancel the duplicates, then retry this delivery"
            )
        return matching[0] if matching else None

    async def _any_incident(self, corr: str) -> bool:
        field = self._settings.correlation_field
        rows = await self._client.entries(INCIDENT_FORM, q.equals(field, corr), ["Request ID", field])
        return any(row.get(field) == corr for row in rows)

    async def _create(self, event: AlertEvent, corr: str, marker: str, *, resolved: bool = False) -> str:
        settings = self._settings
        ci, ci_lines = await self._cmdb.bind(event)
        impact, urgency = settings.levels(event.severity)
        route = incident_fields(routed(settings, event.route))
        details = alert_text.description(event, ci_lines) + f"\nReference: {marker}"
        values: dict[str, Any] = {
            "z1D_Action": "CREATE",
            "First_Name": settings.customer_first_name,
            "Last_Name": settings.customer_last_name,
            "Description": alert_text.summary(event, SUMMARY_LIMIT),
            "Detailed_Decription": details,
            "Impact": impact,
            "Urgency": urgency,
            "Status": "Assigned" if route.get("Assigned Group") else "New",
            "Reported Source": settings.reported_source,
            "Service_Type": settings.service_type,
            settings.correlation_field: corr,
            **route,
        }
        if ci is not None:
            values |= {"HPD_CI": ci.name, "HPD_CI_ReconID": ci.reconciliation_id}
        if resolved:
            values |= {
                "Status": RESOLVED,
                "Status_Reason": settings.resolved_status_reason,
                "Resolution": _resolution(event, marker, before_fired=True),
            }
        echoed = await self._client.create(CREATE_FORM, values, ["Incident Number"])
        return str(echoed.get("Incident Number") or "")

    async def _markers(self, incident: Mapping[str, Any]) -> tuple[set[str], set[str]]:
        """Markers in the incident's work log, and in its own fields (description, resolution)."""
        number = str(incident["Incident Number"])
        in_logs: set[str] = set()
        for page in range(_WORKLOG_PAGES):
            rows = await self._client.entries(
                WORKLOG_FORM,
                q.equals("Incident Number", number),
                ["Incident Number", "Detailed Description"],
                limit=_WORKLOG_PAGE,
                offset=page * _WORKLOG_PAGE,
            )
            for row in rows:
                if row.get("Incident Number") == number:
                    in_logs |= markers_in(row.get("Detailed Description"))
            if len(rows) < _WORKLOG_PAGE:
                break
        in_fields = markers_in(incident.get("Detailed Decription")) | markers_in(incident.get("Resolution"))
        return in_logs, in_fields

    async def _work_log(self, number: str, summary: str, details: str) -> None:
        await self._client.create(
            WORKLOG_FORM,
            {
                "Incident Number": number,
                "Work Log Type": "General Information",
                "Description": summary[:SUMMARY_LIMIT],
                "Detailed Description": details,
                "View Access": "Internal",
                "Secure Work Log": "No",
            },
            ["Work Log ID"],
        )


def _occurrence_note(event: AlertEvent, marker: str) -> str:
    when = f" at {event.fired_at.isoformat()}" if event.fired_at else ""
    values = f"\n{event.condition_summary}" if event.condition_summary else ""
    return f"Occurrence of Azure Monitor alert {event.alert_id} (Fired{when}).{values}\n{marker}"


def _resolved_note(event: AlertEvent, marker: str, firing: int) -> str:
    text = f"Azure Monitor sent Resolved for alert {event.alert_id}."
    if firing:
        text += f" {firing} grouped alert(s) still firing; the incident stays open."
    return f"{text}\n{marker}"


def _resolution(event: AlertEvent, marker: str, *, before_fired: bool = False) -> str:
    when = f" at {event.resolved_at.isoformat()}" if event.resolved_at else ""
    text = f"Resolved by Azure Monitor: monitorCondition=Resolved{when} for alert {event.alert_id}."
    if before_fired:
        text += " Resolved arrived before Fired was applied; recorded as resolved so that the late Fired opens nothing."
    return f"{text}\nReference: {marker}"


def _log_replay(number: str, event: AlertEvent) -> None:
    log.info(
        f"bmc {str(event.condition).lower()} already noted (replay)",
        extra={"event": "bmc_replay", "number": number, "alert_id": event.alert_id, "condition": str(event.condition)},
    )
