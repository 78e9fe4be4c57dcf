"""The AR System JWT session: ``/api/jwt/login`` once, the token reused until it expires, logout at the end.

``POST /api/jwt/login`` (form-encoded ``username``, ``password``) answers the token as plain text;
every later request carries ``Authorization: AR-JWT <token>``; ``POST /api/jwt/logout`` releases it
[BMC-AUTH]. The token is dropped when BMC answers 401 so that the caller can log in again once.
Neither the password nor the token ever appears in an exception or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

import httpx

from receiver.itsm.base import CredentialsRejected, TransientBackendError
from receiver.itsm.bmc_helix.errors import ar_message
from receiver.itsm.bmc_helix.settings import BmcSettings

log = logging.getLogger("secure_export.bmc_helix")

LOGIN_PATH = "/api/jwt/login"
LOGOUT_PATH = "/api/jwt/logout"
SCHEME = "AR-JWT"


class JwtSession:
    """Hands out ``AR-JWT`` headers; logs in when there is no valid token."""

    def __init__(
        self, settings: BmcSettings, http: httpx.AsyncClient, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.outcomes: Counter[str] = Counter()
        """Login requests by outcome: ``ok``, ``refused`` or ``unavailable``."""

    @property
    def logins(self) -> int:
        """Login requests so far."""
        return sum(self.outcomes.values())

    async def header(self) -> str:
        """The ``Authorization`` value to send now; logs in first when needed."""
        async with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                await self._login()
            assert self._token is not None
            return f"{SCHEME} {self._token}"

    def invalidate(self, header: str) -> None:
        """Forget the token that got a 401, unless a concurrent request already replaced it."""
        if self._token is not None and header == f"{SCHEME} {self._token}":
            self._token = None

    async def logout(self) -> None:
        """Release the token on the server (best effort: a failed logout only lets it expire)."""
        token, self._token = self._token, None
        if token is None:
            return
        try:
            response = await self._http.post(
                f"{self._settings.url}{LOGOUT_PATH}", headers={"Authorization": f"{SCHEME} {token}"}
            )
            log.info("bmc logout", extra={"event": "bmc_logout", "status": response.status_code})
        except httpx.HTTPError as error:
            log.warning(
                "bmc logout failed; the token expires by itself",
                extra={"event": "bmc_logout_failed", "error": type(error).__name__},
            )

    async def _login(self) -> None:
        settings = self._settings
        form = {"username": settings.username, "password": settings.password.get_secret_value()}
        try:
            response = await self._http.post(
                f"{settings.url}{LOGIN_PATH}", data=form, headers={"Accept": "text/plain, application/json"}
            )
        except httpx.TimeoutException:
            self.outcomes["unavailable"] += 1
            raise TransientBackendError("BMC's /api/jwt/login did not answer in time") from None
        except httpx.TransportError as error:
            self.outcomes["unavailable"] += 1
            raise TransientBackendError(f"cannot reach BMC's /api/jwt/login: {type(error).__name__}") from None
        if response.status_code in (408, 429) or response.status_code >= 500:
            self.outcomes["unavailable"] += 1
            raise TransientBackendError(f"BMC's /api/jwt/login answered HTTP {response.status_code}")
        token = response.text.strip()
        if response.status_code != 200 or not token or " " in token:
            self.outcomes["refused"] += 1
            raise CredentialsRejected(
                f"BMC refused the login of {settings.username!r}: HTTP {response.status_code} "
                f"{ar_message(response)}; check SECURE_EXPORT_BMC_USERNAME and SECURE_EXPORT_BMC_PASSWORD"
            )
        margin = min(settings.token_refresh_margin_seconds, settings.token_lifetime_seconds / 2)
        self._token = token
        self._expires_at = self._clock() + settings.token_lifetime_seconds - margin
        self.outcomes["ok"] += 1
        log.info("bmc login", extra={"event": "bmc_login", "user": settings.username})
