"""``BmcHelixBackend``: the receiver's backend for BMC Helix ITSM (``SECURE_EXPORT_ITSM=bmc-helix``).

Lifecycle: the HTTP client opens at start (nothing is called then: an unreachable BMC must not
stop the receiver), the JWT session logs in on first use and logs out at close. ``/readyz`` is not
ready while BMC refuses the credentials, and says why; an outage leaves it ready, because alerts
must keep reaching the inbox while the dispatcher retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import httpx

from receiver.alerts.events import AlertEvent, Condition
from receiver.itsm.base import Backend, MetricFamily, Readiness, TransientBackendError
from receiver.itsm.bmc_helix.auth import JwtSession
from receiver.itsm.bmc_helix.client import ArClient
from receiver.itsm.bmc_helix.cmdb import CiFinder
from receiver.itsm.bmc_helix.incidents import INCIDENT_FORM, IncidentDesk
from receiver.itsm.bmc_helix.settings import BmcSettings
from receiver.itsm.key_locks import KeyLocks
from receiver.itsm.readiness import ReadinessProbe
from receiver.storage.records import WorkItemRef

if TYPE_CHECKING:
    pass


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
        self._locks = KeyLocks()
        self._readiness = ReadinessProbe(
            "BMC", ttl=settings.readiness_cache_seconds, timeout=settings.readiness_timeout_seconds, clock=clock
        )

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
        self._client.on_credentials_rejected.append(self._readiness.credentials_rejected)
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
        cached = self._readiness.cached()
        if cached is not None:
            return cached
        return await self._readiness.probe(
            lambda: self._api().entries(INCIDENT_FORM, "'Incident Number' = $NULL$", ["Incident Number"], limit=1)
        )

    async def apply(self, event: AlertEvent) -> WorkItemRef | None:
        """Apply one delivery; idempotent per ``(alert_id, condition)``, serialised per correlation key.

        Returns the incident's number (no link: BMC's web UI lives on another host than its REST API).
        """
        desk = self._desk
        if desk is None:
            raise TransientBackendError("BMC Helix backend not started")
        async with self._locks.hold(event.correlation_key):
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

    def metric_families(self) -> Sequence[MetricFamily]:
        """``secure_export_bmc_http_requests{form,method,status}`` and ``secure_export_bmc_login_requests{outcome}``."""
        return [
            MetricFamily(
                "secure_export_bmc_http_requests",
                "BMC AR System REST requests by form, HTTP method and status (HTTP code, timeout or error)",
                ("form", "method", "status"),
                {key: float(count) for key, count in self.http_calls.items()},
            ),
            MetricFamily(
                "secure_export_bmc_login_requests",
                "Requests to BMC's /api/jwt/login by outcome: ok, refused (credentials) or unavailable",
                ("outcome",),
                {(outcome,): float(count) for outcome, count in self.login_outcomes.items()},
            ),
        ]

    def _api(self) -> ArClient:
        if self._client is None:
            raise TransientBackendError("BMC Helix backend not started")
        return self._client
