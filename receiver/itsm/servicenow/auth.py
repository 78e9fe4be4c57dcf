"""Authentication against a ServiceNow instance: basic auth, or OAuth tokens from ``/oauth_token.do``.

An OAuth token is fetched lazily, reused until ``token_refresh_margin_seconds`` before it expires, and
dropped when ServiceNow answers 401 so that the caller can retry once with a fresh one. Tokens and
secrets never appear in exceptions or logs.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from receiver.itsm.base import CredentialsRejected, TransientBackendError
from receiver.itsm.servicenow.settings import AuthMode, ServiceNowSettings

log = logging.getLogger("secure_export.servicenow")


@dataclass(frozen=True, slots=True)
class Credential:
    """The ``Authorization`` header value for one request, and whether a retry may refresh it."""

    header: str
    refreshable: bool


class Authenticator:
    """Hands out ``Authorization`` headers for the configured authentication mode."""

    def __init__(
        self, settings: ServiceNowSettings, http: httpx.AsyncClient, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._http = http
        self._mode = settings.effective_auth
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.token_requests = 0
        """How many times a token was requested (for metrics and tests)."""
        self.token_outcomes: Counter[str] = Counter()
        """Token requests by outcome: ``ok``, ``refused`` (credentials rejected), ``unavailable``."""

    @property
    def mode(self) -> AuthMode:
        """The authentication mode in use."""
        return self._mode

    async def credential(self) -> Credential:
        """The header to send now; fetches or refreshes an OAuth token when needed."""
        if self._mode is AuthMode.BASIC:
            assert self._settings.username is not None and self._settings.password is not None
            raw = f"{self._settings.username}:{self._settings.password.get_secret_value()}"
            return Credential("Basic " + base64.b64encode(raw.encode()).decode("ascii"), refreshable=False)
        async with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                await self._fetch_token()
            assert self._token is not None
            return Credential(f"Bearer {self._token}", refreshable=True)

    def reload_secret_files(self) -> bool:
        """Read the mounted secret files again; True when a credential changed (its token is dropped).

        Called when ServiceNow refuses the credentials: a rotated secret file then takes effect
        without a restart. An unreadable file keeps the current credentials (and is logged).
        """
        try:
            fresh = self._settings.reread_secret_files()
        except ValueError as error:
            log.warning(
                "servicenow secret file unreadable",
                extra={"event": "servicenow_secret_file_error", "error": str(error)},
            )
            return False
        if fresh is None:
            return False
        self._settings = fresh
        self._token = None
        log.info("servicenow credentials re-read from their files", extra={"event": "servicenow_credentials_reloaded"})
        return True

    def invalidate(self, credential: Credential) -> None:
        """Forget the token that got a 401, unless a concurrent request already replaced it."""
        if self._token is not None and credential.header == f"Bearer {self._token}":
            self._token = None

    async def _fetch_token(self) -> None:
        settings = self._settings
        assert settings.client_id is not None and settings.client_secret is not None
        form = {
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.get_secret_value(),
        }
        if self._mode is AuthMode.OAUTH_PASSWORD:
            assert settings.username is not None and settings.password is not None
            form |= {
                "grant_type": "password",
                "username": settings.username,
                "password": settings.password.get_secret_value(),
            }
        else:
            form["grant_type"] = "client_credentials"
        self.token_requests += 1
        try:
            response = await self._http.post(
                f"{settings.url}/oauth_token.do", data=form, headers={"Accept": "application/json"}
            )
        except httpx.TimeoutException:
            self.token_outcomes["unavailable"] += 1
            raise TransientBackendError("ServiceNow's OAuth token endpoint did not answer in time") from None
        except httpx.TransportError as error:
            self.token_outcomes["unavailable"] += 1
            raise TransientBackendError(
                f"cannot reach ServiceNow's OAuth token endpoint: {type(error).__name__}"
            ) from None
        if response.status_code == 429 or response.status_code >= 500:
            self.token_outcomes["unavailable"] += 1
            raise TransientBackendError(f"ServiceNow's OAuth token endpoint answered HTTP {response.status_code}")
        body = _json_object(response)
        token = body.get("access_token")
        if response.status_code != 200 or not isinstance(token, str) or not token:
            self.token_outcomes["refused"] += 1
            reason = body.get("error_description") or body.get("error") or "no access_token in the answer"
            raise CredentialsRejected(
                f"ServiceNow refused the OAuth {self._mode.value} grant for client "
                f"{settings.client_id!r}: HTTP {response.status_code} {reason}; check "
                "SECURE_EXPORT_SERVICENOW_CLIENT_ID/_CLIENT_SECRET (and _USERNAME/_PASSWORD for the password grant)"
            )
        expires_in = body.get("expires_in", 1800)
        try:
            lifetime = float(expires_in) if isinstance(expires_in, int | float | str) else 1800.0
        except ValueError:
            lifetime = 1800.0
        # Refresh early, but never so early that a short-lived token is refreshed on every call.
        margin = min(settings.token_refresh_margin_seconds, lifetime / 2)
        self._token = token
        self._expires_at = self._clock() + lifetime - margin
        self.token_outcomes["ok"] += 1
        log.info(
            "servicenow oauth access obtained",
            extra={"event": "servicenow_oauth", "grant": self._mode.value, "lifetime_seconds": int(lifetime)},
        )


def _json_object(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
