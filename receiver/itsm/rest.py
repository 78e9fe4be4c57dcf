"""What the REST clients of ServiceNow and BMC Helix share: one counted request, and the failure a status means."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import httpx

from receiver.itsm.base import PermanentBackendError, TransientBackendError


class RestSender:
    """Sends JSON requests to one ITSM tool and counts them by ``(table or form, method, status)``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        tool: str,
        timeout_seconds: float,
        label: str,
        logger: logging.Logger,
        log_prefix: str,
    ) -> None:
        """``label`` names ``what`` in the debug log (``table``, ``form``); ``log_prefix`` starts its event name."""
        self._http = http
        self._base_url = base_url
        self._tool = tool
        self._timeout_seconds = timeout_seconds
        self._label = label
        self._log = logger
        self._log_prefix = log_prefix
        self.calls: Counter[tuple[str, str, str]] = Counter()
        """Requests by ``(what, method, status)``; status is the HTTP code, ``timeout`` or ``error``."""

    async def send(
        self,
        method: str,
        path: str,
        what: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
        authorization: str,
    ) -> httpx.Response:
        """One request; a timeout or a connection error is a :class:`TransientBackendError` naming ``what``."""
        tool = self._tool
        headers = {"Accept": "application/json", "Authorization": authorization}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await self._http.request(
                method,
                f"{self._base_url}{path}",
                params=dict(params or {}),
                content=None if body is None else json.dumps(body).encode(),
                headers=headers,
            )
        except httpx.TimeoutException:
            self.calls[(what, method, "timeout")] += 1
            raise TransientBackendError(
                f"{tool} did not answer {method} {what} within {self._timeout_seconds:g}s"
            ) from None
        except httpx.TransportError as error:
            self.calls[(what, method, "error")] += 1
            raise TransientBackendError(f"cannot reach {tool} for {method} {what}: {type(error).__name__}") from None
        self.calls[(what, method, str(response.status_code))] += 1
        self._log.debug(
            f"{self._log_prefix} call",
            extra={
                "event": f"{self._log_prefix}_call",
                "method": method,
                self._label: what,
                "status": response.status_code,
            },
        )
        return response


def failure_for_status(
    tool: str, method: str, what: str, status: int, message: str
) -> TransientBackendError | PermanentBackendError:
    """A refusal the client did not handle itself: 5xx and 408 are worth retrying, any other status is not."""
    if status >= 500 or status == 408:
        return TransientBackendError(f"{tool} failed {method} {what}: HTTP {status} {message}")
    return PermanentBackendError(f"{tool} refused {method} {what}: HTTP {status} {message}")
