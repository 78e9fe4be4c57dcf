"""Incident records through the Table API: find by correlation, create, update, and their markers.

Incidents are found by ``correlation_id`` (the hashed correlation key) and ``correlation_display``
(the hashed rule and targets), always with ``sysparm_fields`` and a limit; every returned row is
checked, because ServiceNow silently drops query parts it does not understand. Work notes read back
empty through the Table API, so occurrence markers are read from ``sys_journal_field``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from receiver.alerts.events import AlertEvent
from receiver.itsm.base import PermanentBackendError
from receiver.itsm.markers import correlation_id, lifecycle_id, markers_in
from receiver.itsm.servicenow import render
from receiver.itsm.servicenow.client import Row, ServiceNowClient
from receiver.itsm.servicenow.cmdb import CmdbBinder
from receiver.itsm.servicenow.routing import NameResolver
from receiver.itsm.servicenow.settings import ServiceNowSettings
from receiver.itsm.servicenow.visibility import IncidentVisibility

log = logging.getLogger("secure_export.servicenow")

STATE_IN_PROGRESS = "2"
STATE_RESOLVED = "6"
CLOSED_OR_CANCELED = frozenset({"7", "8"})
"""Closed and Canceled: a person finished the incident; it is never reopened."""
INACTIVE_OR_RESOLVED = frozenset({STATE_RESOLVED, *CLOSED_OR_CANCELED})
"""Resolved, Closed, Canceled: a Resolved delivery has nothing left to do."""

SYS_ID = re.compile(r"[0-9a-f]{32}")
_FIELDS = "sys_id,number,state,active,correlation_id,correlation_display,close_notes,resolved_at"
_LOOKUP_LIMIT = 10
"""Incidents read per lookup: this key's and the latest of its rule and targets (newest first)."""
_WRITE_PARAMS = {"sysparm_fields": "sys_id,number,state", "sysparm_exclude_reference_link": "true"}
_MARKER_PAGE = 500
_MARKER_PAGES = 20


@dataclass(frozen=True, slots=True)
class IncidentMatches:
    """What one lookup found for an event (:meth:`IncidentTable.find`)."""

    correlation_id: str
    open: Row | None
    """This key's active incident that is not Resolved."""
    resolved: Row | None
    """This key's newest incident in state Resolved (still active)."""
    exists: bool
    """Whether this key has any incident at all (Closed ones included)."""
    latest: Row | None
    """The newest incident of the same rule and targets, whatever its key."""
    closed: Row | None
    """That newest incident, or this key's, when a person closed (or canceled) it."""
    others_open: bool = False
    """Whether an older incident of the same rule and targets is still open."""


def is_open(incident: Mapping[str, Any]) -> bool:
    """Active and neither Resolved, Closed nor Canceled."""
    return str(incident.get("state")) not in INACTIVE_OR_RESOLVED and truthy(incident.get("active"))


def truthy(value: Any) -> bool:
    """A Table API boolean (``"true"`` with raw values)."""
    return value is True or str(value).lower() == "true"


class IncidentTable:
    """The ``incident`` table as this backend uses it."""

    def __init__(
        self,
        settings: ServiceNowSettings,
        client: ServiceNowClient,
        cmdb: CmdbBinder,
        names: NameResolver,
        visibility: IncidentVisibility,
    ) -> None:
        self._settings = settings
        self._client = client
        self._cmdb = cmdb
        self._names = names
        self._visibility = visibility

    async def find(self, event: AlertEvent, *, history: bool = False) -> IncidentMatches:
        """This key's incidents and, with ``history``, the latest incidents of the same rule and targets.

        Two bounded queries, not one with ``^OR``: the newest incidents of a busy rule would crowd
        this key's own out of a limited page. The second is skipped when it would read the same rows
        (``rule-target`` keys are the rule and targets).
        """
        corr = correlation_id(event.correlation_key)
        mine = await self._rows(f"correlation_id={corr}^ORDERBYDESCnumber", "correlation_id", corr)
        active = [row for row in mine if truthy(row.get("active"))]
        open_ = [row for row in active if str(row.get("state")) not in INACTIVE_OR_RESOLVED]
        if len(open_) > 1:
            numbers = ", ".join(str(row.get("number")) for row in open_)
            raise PermanentBackendError(
                f"ServiceNow holds more than one open incident with correlation_id {corr} ({numbers}); "
                "resolve or cancel the duplicates, then retry this work item"
            )
        resolved = next((row for row in active if str(row.get("state")) == STATE_RESOLVED), None)
        rows: list[Row] = []
        if history and event.lifecycle_key:
            lc = lifecycle_id(event.lifecycle_key)
            if event.lifecycle_key == event.correlation_key:
                rows = mine
            elif not open_ and resolved is None:
                rows = await self._rows(f"correlation_display={lc}^ORDERBYDESCnumber", "correlation_display", lc)
        latest = rows[0] if rows else None
        closed = latest if latest is not None and str(latest.get("state")) in CLOSED_OR_CANCELED else None
        if closed is None:
            closed = next((row for row in mine if str(row.get("state")) in CLOSED_OR_CANCELED), None)
        # Other instances of the rule still open (one per metric dimension): a new one is not a re-fire.
        others_open = any(is_open(row) for row in rows[1:])
        return IncidentMatches(corr, open_[0] if open_ else None, resolved, bool(mine), latest, closed, others_open)

    async def _rows(self, query: str, field: str, value: str) -> list[Row]:
        rows = await self._client.rows("incident", query, _FIELDS, limit=_LOOKUP_LIMIT)
        # Every row is checked: ServiceNow drops query parts it does not understand. The sys_id goes
        # into a path and a query next.
        return [row for row in rows if row.get(field) == value and SYS_ID.fullmatch(str(row.get("sys_id", "")))]

    async def readable(self, corr: str) -> bool:
        """Whether an incident with ``correlation_id`` ``corr`` can be read back by this user."""
        rows = await self._client.rows("incident", f"correlation_id={corr}", "sys_id,correlation_id")
        return any(row.get("correlation_id") == corr for row in rows)

    async def noted_markers(self, incident: Row) -> set[str]:
        """Occurrence markers the incident already carries: in its work notes and its close notes."""
        return await self._journal_markers(str(incident["sys_id"])) | markers_in(incident.get("close_notes"))

    async def _journal_markers(self, sys_id: str) -> set[str]:
        """Every occurrence marker in the incident's work notes (read from ``sys_journal_field``).

        Where an ACL refuses ``sys_journal_field`` the answer is empty (logged): a replayed Fired may
        then add its note twice, and a grouped incident resolves on its first Resolved.
        """
        found: set[str] = set()
        for page in range(_MARKER_PAGES):
            try:
                rows = await self._client.rows(
                    "sys_journal_field",
                    f"element_id={sys_id}^element=work_notes^valueLIKEsemark-^ORDERBYsys_created_on",
                    "element_id,value",
                    limit=_MARKER_PAGE,
                    offset=page * _MARKER_PAGE,
                )
            except PermanentBackendError as error:
                log.warning(
                    "servicenow cannot read work notes from sys_journal_field; replays are recognised less well",
                    extra={"event": "servicenow_journal_unreadable", "error": str(error)},
                )
                return found
            for row in rows:
                if row.get("element_id") == sys_id:
                    found |= markers_in(row.get("value"))
            if len(rows) < _MARKER_PAGE:
                break
        return found

    async def create(
        self,
        event: AlertEvent,
        corr: str,
        marker: str,
        *,
        resolved: bool = False,
        follows: Mapping[str, Any] | None = None,
        outside_window: bool = False,
    ) -> Row:
        """Open an incident for ``event`` (already resolved with ``resolved``), bound and routed.

        ``follows`` is the earlier incident this one follows (closed by a person, or resolved longer
        ago than the reopen window with ``outside_window``); its number goes into the work notes.
        """
        settings = self._settings
        bound, ci_lines = await self._cmdb.bind(event)
        levels = settings.impact_urgency(event.severity)
        route = event.route
        routed = await self._names.routed_fields(event, settings.assignment_group)
        notes = list(routed.notes)
        if follows is not None and follows.get("number"):
            if outside_window:
                notes.append(f"Follows {follows.get('number')}, resolved longer ago than the reopen window.")
            else:
                notes.append(
                    f"Follows {follows.get('number')}, which a person closed; closed incidents are never reopened."
                )
        opening = render.occurrence_note(event, marker, opened=True)
        record: dict[str, Any] = {
            "short_description": render.short_description(event),
            "description": render.description(event, ci_lines),
            # A route's impact and urgency beat the severity map.
            "urgency": str(route.urgency if route is not None and route.urgency else levels.urgency),
            "impact": str(route.impact if route is not None and route.impact else levels.impact),
            "correlation_id": corr,
            "correlation_display": lifecycle_id(event.lifecycle_key or event.correlation_key),
            "work_notes": "\n".join([*notes, opening]),
        }
        if bound is not None:
            record["cmdb_ci"] = bound.sys_id
        optional = {
            "category": settings.category,
            "caller_id": settings.caller,
            "contact_type": settings.contact_type,
        }
        record |= {field: value for field, value in optional.items() if value}
        record |= routed.fields
        if resolved:
            record |= {
                "state": STATE_RESOLVED,
                "close_code": settings.close_code,
                "close_notes": render.close_notes(event, marker, before_fired=True),
            }
        result = await self._client.call(
            "POST", "/api/now/table/incident", table="incident", params=_WRITE_PARAMS, body=record
        )
        created: Row = result if isinstance(result, dict) else {}
        await self._visibility.after_create(corr, str(created.get("number") or "?"), self.readable)
        return created

    async def update(self, sys_id: str, fields: Mapping[str, Any]) -> None:
        """Change ``fields`` of the incident ``sys_id``."""
        await self._client.call(
            "PATCH", f"/api/now/table/incident/{sys_id}", table="incident", params=_WRITE_PARAMS, body=fields
        )
