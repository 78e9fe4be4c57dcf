"""ServiceNow REST calls: authenticated, paced under the instance's rate limit, failures classified.

429 is :class:`RateLimited` (waited out, then transient); 5xx, 408, timeouts and connection errors
are transient; 401 is :class:`~receiver.itsm.base.CredentialsRejected`; other 4xx are permanent,
carrying ServiceNow's own message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from receiver.itsm.base import CredentialsRejected, TransientBackendError
from receiver.itsm.rest import RestSender, failure_for_status
from receiver.itsm.retry_after import retry_after
from receiver.itsm.servicenow.auth import Authenticator, Credential
from receiver.itsm.servicenow.pacing import Pacer
from receiver.itsm.servicenow.settings import ServiceNowSettings

log = logging.getLogger("secure_export.servicenow")

Row = dict[str, Any]
"""One Table API record as read (``sysparm_display_value=false``: raw values)."""


class RateLimited(TransientBackendError):
    """ServiceNow answered 429 (its rate limit rules); ``retry_after`` is what it asked for."""


class ServiceNowClient:
    """Table API calls with authentication, pacing, error classification and per-table call counters.

    Built with the backend; :meth:`open` gives it the HTTP client at start. Until then every call is
    transient ("not started").
    """

    def __init__(self, settings: ServiceNowSettings) -> None:
        self._settings = settings
        self._sender: RestSender | None = None
        self._auth: Authenticator | None = None
        self.pacer = Pacer(settings.max_connections)
        """Requests in flight, adapted to the instance's rate limit (:mod:`.pacing`)."""
        self.on_credentials_rejected: list[Callable[[CredentialsRejected], None]] = []

    def open(self, http: httpx.AsyncClient, auth: Authenticator) -> None:
        """Start calling through ``http`` with ``auth``; counters and pacing start afresh."""
        self._sender = RestSender(
            http,
            self._settings.url,
            tool="ServiceNow",
            timeout_seconds=self._settings.timeout_seconds,
            label="table",
            logger=log,
            log_prefix="servicenow",
        )
        self._auth = auth
        self.pacer = Pacer(self._settings.max_connections)

    @property
    def calls(self) -> Mapping[tuple[str, str, str], int]:
        """Requests so far by ``(table, method, status)``; status is the HTTP code, ``timeout`` or ``error``."""
        return dict(self._sender.calls) if self._sender else {}

    async def rows(self, table: str, query: str, fields: str, *, limit: int = 2, offset: int = 0) -> list[Row]:
        """The records of ``table`` matching the encoded ``query`` (raw values, no reference links)."""
        result = await self.call(
            "GET",
            f"/api/now/table/{table}",
            table=table,
            params={
                "sysparm_query": query,
                "sysparm_fields": fields,
                "sysparm_limit": str(limit),
                **({"sysparm_offset": str(offset)} if offset else {}),
                "sysparm_display_value": "false",
                "sysparm_exclude_reference_link": "true",
                "sysparm_no_count": "true",
            },
        )
        return [row for row in result if isinstance(row, dict)] if isinstance(result, list) else []

    async def call(
        self,
        method: str,
        path: str,
        *,
        table: str,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request; returns the ``result`` of the envelope or raises a backend error.

        Refused credentials are read again from their secret files (``_PASSWORD_FILE``,
        ``_CLIENT_SECRET_FILE``) and, when those changed, the request is sent once more. A 429 is
        waited out (``Retry-After``) and the request sent again, up to ``rate_limit_wait_seconds``.
        """
        waited = 0.0
        while True:
            await self.pacer.acquire()
            ok = False
            try:
                result = await self._call_authenticated(method, path, table, params, body)
                ok = True
                return result
            except RateLimited as error:
                self.pacer.rate_limited_once()
                pause = self.pacer.delay(error.retry_after)
                if waited + pause > self._settings.rate_limit_wait_seconds:
                    raise
            finally:
                self.pacer.release(ok=ok)
            waited += pause
            await asyncio.sleep(pause)

    def _started(self) -> tuple[RestSender, Authenticator]:
        if self._sender is None or self._auth is None:
            raise TransientBackendError("ServiceNow backend not started")
        return self._sender, self._auth

    async def _call_authenticated(
        self, method: str, path: str, table: str, params: Mapping[str, str] | None, body: Mapping[str, Any] | None
    ) -> Any:
        _sender, auth = self._started()
        try:
            try:
                return await self._call_once(method, path, table, params, body)
            except CredentialsRejected:
                if not auth.reload_secret_files():
                    raise
            return await self._call_once(method, path, table, params, body)
        except CredentialsRejected as error:
            for hook in self.on_credentials_rejected:
                hook(error)
            raise

    async def _call_once(
        self, method: str, path: str, table: str, params: Mapping[str, str] | None, body: Mapping[str, Any] | None
    ) -> Any:
        sender, auth = self._started()
        credential: Credential = await auth.credential()
        response = await sender.send(method, path, table, params, body, credential.header)
        if response.status_code == 401 and credential.refreshable:
            # An OAuth token can be revoked or expire early: refresh it once, then give up.
            auth.invalidate(credential)
            credential = await auth.credential()
            response = await sender.send(method, path, table, params, body, credential.header)
        return self._result(method, table, response, auth)

    def _result(self, method: str, table: str, response: httpx.Response, auth: Authenticator) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            if status == 204 or not response.content:
                return None
            try:
                envelope = response.json()
            except ValueError:
                # A hibernating or upgrading instance answers 200 with an HTML page.
                raise TransientBackendError(
                    f"ServiceNow answered {method} {table} with HTTP {status} but no JSON "
                    "(instance hibernating or behind a login page?)"
                ) from None
            return envelope.get("result") if isinstance(envelope, dict) else None
        message = error_message(response)
        if status == 429:
            wait = retry_after(response, self._settings.retry_after_cap_seconds)
            raise RateLimited(f"ServiceNow rate limit on {method} {table}: {message}", retry_after=wait)
        if status == 401:
            raise CredentialsRejected(
                f"ServiceNow refused the credentials ({auth.mode.value}) on {method} {table}: "
                f"HTTP 401 {message}; check the SECURE_EXPORT_SERVICENOW_* credentials"
            )
        raise failure_for_status("ServiceNow", method, table, status, message)


def error_message(response: httpx.Response) -> str:
    """ServiceNow's ``{"error": {"message", "detail"}}`` as one line (or the start of a non-JSON body)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or "").strip()
        detail = str(error.get("detail") or "").strip()
        return f"{message}: {detail}" if message and detail else message or detail or response.reason_phrase
    if isinstance(error, str):  # OAuth endpoint style
        return error
    return response.reason_phrase


__all__ = ["RateLimited", "Row", "ServiceNowClient", "error_message"]
