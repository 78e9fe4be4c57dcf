"""AR System REST calls on ``/api/arsys/v1/entry/{form}`` with the JWT session and failure classification.

A 401 logs in again once; 429 and 503 are transient with ``Retry-After``; other 4xx are permanent
with BMC's own message (docs/bmc-helix.md, "Failures"). Form names and ids are percent-encoded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from receiver.itsm.base import CredentialsRejected, TransientBackendError
from receiver.itsm.bmc_helix.auth import JwtSession
from receiver.itsm.bmc_helix.errors import ar_message
from receiver.itsm.bmc_helix.settings import BmcSettings
from receiver.itsm.rest import RestSender, failure_for_status
from receiver.itsm.retry_after import retry_after

log = logging.getLogger("secure_export.bmc_helix")

ENTRY_PATH = "/api/arsys/v1/entry"


def entry_path(form: str, entry_id: str | None = None) -> str:
    """``/api/arsys/v1/entry/<form>[/<id>]`` with both parts percent-encoded."""
    path = f"{ENTRY_PATH}/{quote(form, safe=':')}"
    return path if entry_id is None else f"{path}/{quote(entry_id, safe='')}"


def fields_param(names: Sequence[str]) -> str:
    """The ``fields`` parameter: ``values(Field A,Field B)``."""
    return f"values({','.join(names)})"


class ArClient:
    """One AR System REST client: entries by form, counted by ``(form, method, status)``."""

    def __init__(self, settings: BmcSettings, http: httpx.AsyncClient, session: JwtSession) -> None:
        """``http`` is the backend's client; requests are counted by ``(form, method, status)`` (:attr:`calls`)."""
        self._settings = settings
        self._session = session
        self._sender = RestSender(
            http,
            settings.url,
            tool="BMC",
            timeout_seconds=settings.timeout_seconds,
            label="form",
            logger=log,
            log_prefix="bmc",
        )
        self.on_credentials_rejected: list[Callable[[CredentialsRejected], None]] = []

    @property
    def calls(self) -> Mapping[tuple[str, str, str], int]:
        """Requests so far by ``(form, method, status)``; status is the HTTP code, ``timeout`` or ``error``."""
        return self._sender.calls

    async def entries(
        self, form: str, qualification: str, fields: Sequence[str], *, limit: int = 2, offset: int = 0
    ) -> list[dict[str, Any]]:
        """The ``values`` of the entries matching ``qualification`` (at most ``limit``)."""
        params = {"q": qualification, "fields": fields_param(fields), "limit": str(limit)}
        if offset:
            params["offset"] = str(offset)
        body = await self._call("GET", form, entry_path(form), params=params)
        entries = body.get("entries") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            return []
        return [e["values"] for e in entries if isinstance(e, dict) and isinstance(e.get("values"), dict)]

    async def create(self, form: str, values: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
        """Create an entry; returns the ``fields`` BMC echoes back."""
        body = await self._call(
            "POST", form, entry_path(form), params={"fields": fields_param(fields)}, body={"values": dict(values)}
        )
        echoed = body.get("values") if isinstance(body, dict) else None
        return echoed if isinstance(echoed, dict) else {}

    async def update(self, form: str, entry_id: str, values: Mapping[str, Any]) -> None:
        """Change the given fields of one entry."""
        await self._call("PUT", form, entry_path(form, entry_id), body={"values": dict(values)})

    async def _call(
        self,
        method: str,
        form: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            header = await self._session.header()
            response = await self._sender.send(method, path, form, params, body, header)
            if response.status_code == 401:
                # The token expired early or was released elsewhere: log in again, once.
                self._session.invalidate(header)
                header = await self._session.header()
                response = await self._sender.send(method, path, form, params, body, header)
            return self._result(method, form, response)
        except CredentialsRejected as error:
            for hook in self.on_credentials_rejected:
                hook(error)
            raise

    def _result(self, method: str, form: str, response: httpx.Response) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise TransientBackendError(
                    f"BMC answered {method} {form} with HTTP {status} but no JSON (maintenance page?)"
                ) from None
        message = ar_message(response)
        if status in (429, 503):
            raise TransientBackendError(
                f"BMC asked to wait on {method} {form}: HTTP {status} {message}",
                retry_after=retry_after(response, self._settings.retry_after_cap_seconds),
            )
        if status == 401:
            raise CredentialsRejected(
                f"BMC refused the session of {self._settings.username!r} on {method} {form} right after a fresh "
                f"login: HTTP 401 {message}; check SECURE_EXPORT_BMC_USERNAME and its permissions"
            )
        raise failure_for_status("BMC", method, form, status, message)
