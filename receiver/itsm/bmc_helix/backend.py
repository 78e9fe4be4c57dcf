"""``BmcHelixBackend``: the receiver's backend for BMC Helix ITSM (``SECURE_EXPORT_ITSM=bmc-helix``).

Lifecycle: the HTTP client opens at start (nothing is called then: an unreachable BMC must not
stop the receiver), the JWT session logs in on first use and logs out at close. ``/readyz`` is not
ready while BMC refuses the credentials, and says why; an outage leaves it ready, because alerts
must keep reaching the inbox while the dispatcher retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import httpx

from receiver.alerts.events import AlertEvent, Condition
from receiver.itsm.base import Backend, PermanentBackendError, Readiness, TransientBackendError
from receiver.itsm.bmc_helix.auth import CredentialsRejected, JwtSession
from receiver.itsm.bmc_helix.client import ArClient
from receiver.itsm.bmc_helix.cmdb import CiFinder
from receiver.itsm.bmc_helix.incidents import INCIDENT_FORM, IncidentDesk
from receiver.itsm.bmc_helix.settings import BmcSettings
from receiver.storage.records import WorkItemRef


class BmcHelixBackend(Backend):
    """Azure Monitor alerts as BMC Helix incidents, through the AR System REST API."""

    name = "bmc-helix"

    def __init__(
        self,
        settings: BmcSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``transport`` and ``clock`` exist for tests; production uses the defaults."""
        self.settings = settings
        self._transport = transport
        self._clock = clock
        self._http: httpx.AsyncClient | None = None
        self._session: JwtSession | None = None
        self._client: ArClient | None = None
        self._desk: IncidentDesk | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: Counter[str] = Counter()
        self._readiness: tuple[float, Readiness] | None = None

    @classmethod
    def from_env(cls, settings: object | None = None) -> BmcHelixBackend:
        """Build the backend from ``SECURE_EXPORT_BMC_*`` (``settings``, the receiver's own, is not read).

        Raises :class:`~receiver.itsm.bmc_helix.settings.BmcSettingsError` naming each bad variable.
        """
        del settings
        return cls(BmcSettings.load())

    async def start(self) -> None:
        """Open the HTTP client."""
        if self._http is not None:
            return
        settings = self.settings
        self._http = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
            limits=httpx.Limits(max_connections=settings.max_connections),
            follow_redirects=False,
        )
        self._session = JwtSession(settings, self._http, clock=self._clock)
        self._client = ArClient(settings, self._http, self._session)
        self._client.on_credentials_rejected.append(self._remember_rejection)
        self._desk = IncidentDesk(settings, self._client, CiFinder(settings, self._client, clock=self._clock))

    async def close(self) -> None:
        """Log out (releasing the token) and close the HTTP client."""
        if self._http is None:
            return
        if self._session is not None:
            await self._session.logout()
        await self._http.aclose()
        self._http = None

    async def readiness(self) -> Readiness:
        """Not ready while BMC refuses the credentials; cached for ``readiness_cache_seconds``."""
        now = self._clock()
        if self._readiness is not None and now < self._readiness[0]:
            return self._readiness[1]
        try:
            async with asyncio.timeout(self.settings.readiness_timeout_seconds):
                await self._api().entries(INCIDENT_FORM, "'Incident Number' = $NULL$", ["Incident Number"], limit=1)
            result = Readiness(True)
        except CredentialsRejected as error:
            result = Readiness(False, str(error))
        except TimeoutError:
            result = Readiness(True, "BMC is slow to answer; alerts wait in the inbox")
        except TransientBackendError as error:
            result = Readiness(True, f"BMC unreachable, alerts wait in the inbox: {error}")
        except PermanentBackendError:
            result = Readiness(True)  # logged in; the probe form may simply be hidden from this user
        self._readiness = (self._clock() + self.settings.readiness_cache_seconds, result)
        return result

    async def apply(self, event: AlertEvent) -> WorkItemRef | None:
        """Apply one delivery; idempotent per ``(alert_id, condition)``, serialised per correlation key.

        Returns the incident's number (no link: BMC's web UI lives on another host than its REST API).
        """
        desk = self._desk
        if desk is None:
            raise TransientBackendError("BMC Helix backend not started")
        async with self._key_lock(event.correlation_key):
            if event.condition is Condition.FIRED:
                number: str | None = await desk.fired(event)
            else:
                number = await desk.resolved(event)
        return WorkItemRef(number) if number else None

    @property
    def http_calls(self) -> Mapping[tuple[str, str, str], int]:
        """AR REST calls so far by ``(form, method, status)``."""
        return dict(self._client.calls) if self._client else {}

    @property
    def login_outcomes(self) -> Mapping[str, int]:
        """``/api/jwt/login`` requests so far by outcome: ``ok``, ``refused``, ``unavailable``."""
        return dict(self._session.outcomes) if self._session else {}

    def bind_metrics(self, registry: Any) -> None:
        """Publish ``secure_export_bmc_http_requests_total{form,method,status}`` and
        ``secure_export_bmc_login_requests_total{outcome}`` on the receiver's registry (read at scrape time)."""
        registry.register(_BmcCollector(self))

    def _api(self) -> ArClient:
        if self._client is None:
            raise TransientBackendError("BMC Helix backend not started")
        return self._client

    def _remember_rejection(self, error: CredentialsRejected) -> None:
        self._readiness = (self._clock() + self.settings.readiness_cache_seconds, Readiness(False, str(error)))

    @contextlib.asynccontextmanager
    async def _key_lock(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._lock_users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._lock_users[key] -= 1
            if self._lock_users[key] <= 0:
                del self._lock_users[key]
                self._locks.pop(key, None)


class _BmcCollector:
    """Prometheus collector over the backend's live counters."""

    def __init__(self, backend: BmcHelixBackend) -> None:
        self._backend = backend

    def collect(self) -> Iterator[Any]:
        """The counter families, built at scrape time."""
        from prometheus_client.core import CounterMetricFamily

        calls = CounterMetricFamily(
            "secure_export_bmc_http_requests",
            "BMC AR System REST requests by form, HTTP method and status (HTTP code, timeout or error)",
            labels=["form", "method", "status"],
        )
        for (form, method, status), count in sorted(self._backend.http_calls.items()):
            calls.add_metric([form, method, status], float(count))
        yield calls
        logins = CounterMetricFamily(
            "secure_export_bmc_login_requests",
            "Requests to BMC's /api/jwt/login by outcome: ok, refused (credentials) or unavailable",
            labels=["outcome"],
        )
        for outcome, count in sorted(self._backend.login_outcomes.items()):
            logins.add_metric([outcome], float(count))
        yield logins
