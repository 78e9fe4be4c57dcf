"""``ServiceNowBackend``: wires the client, incidents, CMDB, events and metrics into one backend.

Incidents go through the Table API (:mod:`.deliveries`), or events into Event Management
(:mod:`.events`), per ``SECURE_EXPORT_SERVICENOW_TARGET``; docs/servicenow.md describes both.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from receiver.alerts.events import AlertEvent
from receiver.itsm.base import (
    Backend,
    MetricFamily,
    PermanentBackendError,
    Readiness,
    TransientBackendError,
)
from receiver.itsm.key_locks import KeyLocks
from receiver.itsm.readiness import ReadinessProbe
from receiver.itsm.servicenow import metrics
from receiver.itsm.servicenow.auth import Authenticator
from receiver.itsm.servicenow.client import Row, ServiceNowClient
from receiver.itsm.servicenow.close_code import CloseCodeCheck
from receiver.itsm.servicenow.cmdb import CmdbBinder
from receiver.itsm.servicenow.deliveries import IncidentDeliveries
from receiver.itsm.servicenow.events import EventPoster
from receiver.itsm.servicenow.incidents import SYS_ID, IncidentTable
from receiver.itsm.servicenow.routing import NameResolver
from receiver.itsm.servicenow.settings import ServiceNowSettings, Target
from receiver.itsm.servicenow.visibility import IncidentVisibility
from receiver.storage.records import WorkItemRef

if TYPE_CHECKING:
    pass

log = logging.getLogger("secure_export.servicenow")

__all__ = ["ServiceNowBackend"]


class ServiceNowBackend(Backend):
    """Azure Monitor alerts as ServiceNow incidents (Table API) or events (Event Management)."""

    name = "servicenow"

    def __init__(
        self,
        settings: ServiceNowSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        reopen_window: float = 3600.0,
    ) -> None:
        """``transport`` and ``clock`` exist for tests; production uses the defaults.

        ``reopen_window`` (``SECURE_EXPORT_REOPEN_WINDOW``, seconds): a Fired reopens the incident of
        its rule and targets that was resolved this recently (state In Progress, a work note).
        """
        self.settings = settings
        self.reopen_window = reopen_window
        self._transport = transport
        self._clock = clock
        self._http: httpx.AsyncClient | None = None
        self._auth: Authenticator | None = None
        self._client = ServiceNowClient(settings)
        self.names = NameResolver(self._lookup_names, ttl=settings.ci_cache_ttl_seconds, clock=clock)
        """Routing names (groups, services, callers) → sys_ids, with what did not resolve."""
        self._visibility = IncidentVisibility()
        self._close_code = CloseCodeCheck(settings, self._client)
        self._incidents = IncidentTable(
            settings, self._client, CmdbBinder(settings, self._client, clock=clock), self.names, self._visibility
        )
        self._deliveries = IncidentDeliveries(settings, self._incidents, self._close_code, reopen_window=reopen_window)
        self._events = EventPoster(settings, self._client)
        self._locks = KeyLocks()
        self._readiness = ReadinessProbe(
            "ServiceNow",
            ttl=settings.readiness_cache_seconds,
            timeout=settings.readiness_timeout_seconds,
            clock=clock,
        )
        self._client.on_credentials_rejected.append(self._readiness.credentials_rejected)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP client and check ``close_code`` against the instance when it is reachable.

        An unreachable instance or refused credentials do not stop the receiver (alerts wait in the
        inbox, ``/readyz`` explains); a ``close_code`` the instance does not offer does.
        """
        settings = self.settings
        if self._http is not None:
            return
        self._http = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
            limits=httpx.Limits(max_connections=settings.max_connections),
            follow_redirects=False,
        )
        self._auth = Authenticator(settings, self._http, clock=self._clock)
        self._client.open(self._http, self._auth)
        log.info(
            "servicenow backend starting",
            extra={
                "event": "servicenow_start",
                "url": settings.url,
                "target": settings.target.value,
                "auth": self._auth.mode.value,
            },
        )
        if settings.target is Target.INCIDENT:
            try:
                await self._close_code.check()
            except TransientBackendError as error:
                log.warning(
                    "servicenow close_code check deferred until the instance answers",
                    extra={"event": "servicenow_close_code_deferred", "error": str(error)},
                )

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def readiness(self) -> Readiness:
        """Not ready when ServiceNow refuses the credentials or the configuration is wrong.

        An outage leaves the receiver ready on purpose: alerts must keep reaching the inbox, and the
        dispatcher retries. The probe result is cached for ``readiness_cache_seconds``.
        """
        if self._close_code.problem:
            return Readiness(False, self._close_code.problem)
        try:
            unreadable = await self._visibility.problem(self._incidents.readable)
        except (TransientBackendError, PermanentBackendError):
            unreadable = None  # the probe below says what is wrong with the instance
        if unreadable:
            return Readiness(False, unreadable)
        result = self._readiness.cached()
        if result is None:
            table = "incident" if self.settings.target is Target.INCIDENT else "em_event"
            params = {"sysparm_limit": "1", "sysparm_fields": "sys_id"}
            result = await self._readiness.probe(
                lambda: self._client.call("GET", f"/api/now/table/{table}", table=table, params=params)
            )
        return self._with_routing_problems(result)

    def _with_routing_problems(self, result: Readiness) -> Readiness:
        """Ready or not as probed, with the routing names that do not resolve added to the reason."""
        problems = self.names.problems()
        if not problems:
            return result
        text = "; ".join(problems) + " (items go to the default group with a work note)"
        return Readiness(result.ready, f"{result.reason}; {text}" if result.reason else text)

    # -- counters ----------------------------------------------------------------------------

    @property
    def http_calls(self) -> Mapping[tuple[str, str], int]:
        """ServiceNow HTTP calls so far by ``(table, status)``; status is a code, ``timeout`` or ``error``."""
        totals: Counter[tuple[str, str]] = Counter()
        for (table, _method, status), count in self.http_calls_by_method.items():
            totals[(table, status)] += count
        return dict(totals)

    @property
    def http_calls_by_method(self) -> Mapping[tuple[str, str, str], int]:
        """ServiceNow HTTP calls so far by ``(table, method, status)``."""
        return self._client.calls

    @property
    def token_requests(self) -> int:
        """OAuth token requests so far (0 with basic auth)."""
        return self._auth.token_requests if self._auth else 0

    @property
    def token_outcomes(self) -> Mapping[str, int]:
        """OAuth token requests so far by outcome: ``ok``, ``refused`` or ``unavailable``."""
        return dict(self._auth.token_outcomes) if self._auth else {}

    def metric_families(self) -> Sequence[MetricFamily]:
        """``secure_export_servicenow_http_requests``, ``_token_requests`` and the unresolved routing names."""
        return metrics.metric_families(self.http_calls_by_method, self.token_outcomes, self.names.unresolved)

    # -- apply -------------------------------------------------------------------------------

    async def apply(self, event: AlertEvent) -> WorkItemRef | None:
        """Apply one delivery; idempotent per ``(alert_id, condition)``, serialised per correlation key.

        Returns the incident's number and link (``None`` for Event Management, whose own rules open
        the incidents, and for a Resolved whose incident was already closed).
        """
        async with self._locks.hold(event.correlation_key):
            if self.settings.target is Target.EVENT:
                await self._events.post(event)
                return None
            unreadable = await self._visibility.problem(self._incidents.readable)
            if unreadable:
                raise TransientBackendError(unreadable)
            incident = await self._deliveries.apply(event)
        return self._reference(incident)

    def _reference(self, incident: Row | None) -> WorkItemRef | None:
        if not incident or not incident.get("number"):
            return None
        sys_id = str(incident.get("sys_id") or "")
        url = f"{self.settings.url}/nav_to.do?uri=incident.do?sys_id={sys_id}" if SYS_ID.fullmatch(sys_id) else None
        return WorkItemRef(str(incident["number"]), url)

    async def _lookup_names(self, table: str, query: str, fields: str) -> list[dict[str, Any]]:
        """Rows for a routing name lookup (a few: an exact match is checked by the resolver)."""
        return await self._client.rows(table, query, fields, limit=5)
