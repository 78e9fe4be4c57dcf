"""Whether the ServiceNow integration user can read back the incidents it creates.

A read ACL hides rows without a 403; until the first created incident is found again, the backend
refuses work and reports not ready (docs/servicenow.md, "Read ACLs").
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("secure_export.servicenow")

Finder = Callable[[str], Awaitable[bool]]
"""Looks an incident up by ``correlation_id``; True when the user can read it."""


class IncidentVisibility:
    """Remembers an incident the user could not read back, and checks it again on demand."""

    def __init__(self) -> None:
        self._confirmed = False
        self._unreadable: tuple[str, str] | None = None
        """``(correlation_id, number)`` of a created incident the user could not read back."""

    async def after_create(self, corr: str, number: str, find: Finder) -> None:
        """Look a just-created incident up (only until one has been read back once)."""
        if self._confirmed:
            return
        self._unreadable = (corr, number)
        await self.problem(find)

    async def problem(self, find: Finder) -> str | None:
        """Why the backend must not create incidents now, or None (checks the incident again)."""
        if self._unreadable is None:
            return None
        corr, number = self._unreadable
        if await find(corr):
            self._unreadable, self._confirmed = None, True
            return None
        reason = (
            f"ServiceNow created incident {number} but does not show it to this user (a read ACL on "
            "incident?): every alert would open a new incident; grant the integration user read access "
            "to incident (docs/servicenow.md, 'Roles the integration user needs')"
        )
        log.error(
            "servicenow incidents unreadable",
            extra={"event": "servicenow_incident_unreadable", "number": number, "correlation_id": corr},
        )
        return reason
