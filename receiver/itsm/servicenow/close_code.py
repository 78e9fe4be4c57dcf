"""The configured ``close_code`` checked once against the instance's active ``sys_choice`` rows.

A code the instance does not offer is a configuration problem (``/readyz`` says which codes it
offers); a ``sys_choice`` hidden by an ACL leaves the code unchecked, with a warning.
"""

from __future__ import annotations

import logging

from receiver.itsm.base import PermanentBackendError
from receiver.itsm.servicenow.client import ServiceNowClient
from receiver.itsm.servicenow.settings import ServiceNowSettings, Target

log = logging.getLogger("secure_export.servicenow")


class CloseCodeCheck:
    """Checks ``SECURE_EXPORT_SERVICENOW_CLOSE_CODE`` until the instance has answered once."""

    def __init__(self, settings: ServiceNowSettings, client: ServiceNowClient) -> None:
        self._settings = settings
        self._client = client
        self._checked = False
        self.problem: str | None = None
        """Why the configured close code cannot work, once the instance said so."""

    async def check(self) -> None:
        """Raise :class:`PermanentBackendError` when the instance does not offer the close code."""
        settings = self._settings
        if self._checked or settings.target is not Target.INCIDENT:
            return
        try:
            rows = await self._client.rows(
                "sys_choice", "name=incident^element=close_code^inactive=false", "value,label,name,element", limit=200
            )
        except PermanentBackendError as error:
            # An ACL may hide sys_choice from the integration user; that is no reason to stop.
            log.warning(
                "servicenow cannot read sys_choice; using close_code unchecked",
                extra={
                    "event": "servicenow_close_code_unchecked",
                    "close_code": settings.close_code,
                    "error": str(error),
                },
            )
            self._checked = True
            return
        choices = [
            str(row.get("value"))
            for row in rows
            if row.get("name") == "incident" and row.get("element") == "close_code"
        ]
        code = settings.close_code
        if choices and code not in choices:
            self.problem = (
                f"SECURE_EXPORT_SERVICENOW_CLOSE_CODE={code!r} is not an active close_code choice for "
                f"incident on {settings.url}; choose one of: {', '.join(sorted(choices))} (the choices "
                "this user can read: if a read ACL hides some sys_choice rows, grant it read access to them)"
            )
            raise PermanentBackendError(self.problem)
        if not choices:
            log.warning(
                "servicenow sys_choice lists no close_code for incident (ACL?); using close_code unchecked",
                extra={"event": "servicenow_close_code_unchecked", "close_code": code},
            )
        self._checked = True
