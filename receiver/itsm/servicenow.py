"""The ServiceNow backend: incidents through the Table API, or events into Event Management.

Incident mode, per correlation key (serialised by an asyncio lock per key inside this process):

* the open incident is found by ``correlation_id`` = ``azmon:`` + a SHA-256 hex of the correlation key
  (raw alert text never enters ``sysparm_query``), always with ``sysparm_fields`` and
  ``sysparm_limit=2``, and every returned row is checked, because ServiceNow silently drops query
  parts it does not understand;
* Fired with no open incident creates one; Fired with one adds an occurrence ``work_notes`` entry
  (and reopens a Resolved incident to In Progress);
* Resolved sets ``state=6`` with the configured ``close_code`` (checked against ``sys_choice``) and
  ``close_notes`` once every alert instance noted on the incident has resolved (under
  ``SECURE_EXPORT_CORRELATION=rule-target`` one incident groups several); Closed (7) is never set.
  Resolved with no incident records an incident that is already resolved, so that a late Fired
  for the same alert finds it and opens nothing.

Every work note carries a marker ``semark-<hex of the alert id>-fired|resolved``. Journal fields
read back empty through the Table API, so the backend reads the markers from
``sys_journal_field`` (filtered by the incident's sys_id): a marker already there means the
delivery was applied before (a crash after ServiceNow took the change but before the inbox row was
marked done) and the replay changes nothing; Fired markers without their Resolved marker are the
alerts still firing on a grouped incident.

Event mode posts one ``em_event`` per delivery to ``/api/global/em/jsonv2``; Event Management
deduplicates by ``message_key`` (the hashed correlation key) and its own rules open incidents.

Failures map onto the backend contract: 429 becomes :class:`TransientBackendError` with the capped
``Retry-After``; 5xx, timeouts and connection errors are transient; 401 is
:class:`~receiver.itsm.servicenow_auth.CredentialsRejected` (transient: alerts wait, ``/readyz``
says why); other 4xx are :class:`PermanentBackendError` carrying ServiceNow's own message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from receiver.alerts import text as alert_text
from receiver.alerts.events import AlertEvent, Condition
from receiver.itsm.base import Backend, PermanentBackendError, Readiness, TransientBackendError
from receiver.itsm.markers import correlation_id, held_marker, is_held, lifecycle_id, occurrence_marker
from receiver.itsm.markers import markers_in as _markers_in
from receiver.itsm.markers import still_firing as _still_firing
from receiver.itsm.retry_after import retry_after as _retry_after
from receiver.itsm.servicenow_auth import Authenticator, Credential, CredentialsRejected
from receiver.itsm.servicenow_pacing import Pacer
from receiver.itsm.servicenow_routing import NameResolver
from receiver.itsm.servicenow_settings import ServiceNowSettings, ServiceNowSettingsError, Target
from receiver.itsm.servicenow_visibility import IncidentVisibility
from receiver.storage.records import WorkItemRef

log = logging.getLogger("secure_export.servicenow")

__all__ = [
    "CredentialsRejected",
    "ServiceNowBackend",
    "ServiceNowSettings",
    "ServiceNowSettingsError",
    "correlation_id",
    "lifecycle_id",
    "occurrence_marker",
    "query_safe",
]

STATE_IN_PROGRESS = "2"
STATE_RESOLVED = "6"
INACTIVE_OR_RESOLVED = frozenset({"6", "7", "8"})
"""Resolved, Closed, Canceled: a Resolved delivery has nothing left to do."""

_QUERY_SAFE = re.compile(r"[A-Za-z0-9._:/-]{1,255}")
_INCIDENT_FIELDS = "sys_id,number,state,active,correlation_id,correlation_display,close_notes,resolved_at"
_LOOKUP_LIMIT = 10
"""Incidents read per lookup: this key's and the latest of its rule and targets (newest first)."""
_SYS_ID = re.compile(r"[0-9a-f]{32}")
_MARKER_PAGE = 500
_MARKER_PAGES = 20
_CI_CACHE_MAX = 10_000


def query_safe(value: str) -> bool:
    """Whether a CI name or resource id may go into ``sysparm_query``.

    Encoded queries have no escape for ``^`` (condition separator, ``^OR``, ``^NQ``) and evaluate
    values starting with ``javascript:`` on the server, so only a conservative character set passes.
    """
    return bool(_QUERY_SAFE.fullmatch(value)) and "javascript:" not in value.casefold()


class RateLimited(TransientBackendError):
    """ServiceNow answered 429 (its rate limit rules); ``retry_after`` is what it asked for."""


@dataclass(frozen=True, slots=True)
class _Found:
    """What one lookup found for an event (see ``ServiceNowBackend._lookup``)."""

    corr: str
    open: dict[str, Any] | None
    """This key's active incident that is not Resolved."""
    resolved: dict[str, Any] | None
    """This key's newest incident in state Resolved (still active)."""
    any: bool
    """Whether this key has any incident at all (Closed ones included)."""
    latest: dict[str, Any] | None
    """The newest incident of the same rule and targets, whatever its key."""
    closed: dict[str, Any] | None
    """That newest incident, or this key's, when a person closed (or canceled) it."""
    others_open: bool = False
    """Whether an older incident of the same rule and targets is still open."""


@dataclass(frozen=True, slots=True)
class _CiMatch:
    sys_id: str
    name: str


@dataclass(frozen=True, slots=True)
class _CiOutcome:
    """What the CMDB said about one resource id or CI name (for the description)."""

    label: str
    match: _CiMatch | None
    note: str


class _ServiceNowHttp:
    """Table API calls with authentication, error classification and per-table call counters."""

    def __init__(self, settings: ServiceNowSettings, http: httpx.AsyncClient, auth: Authenticator) -> None:
        self._settings = settings
        self._http = http
        self._auth = auth
        self.calls: Counter[tuple[str, str, str]] = Counter()
        """Requests by ``(table, method, status)``; status is the HTTP code, ``timeout`` or ``error``."""
        self.pacer = Pacer(settings.max_connections)
        """Requests in flight, adapted to the instance's rate limit (receiver/itsm/servicenow_pacing.py)."""
        self.on_credentials_rejected: list[Callable[[CredentialsRejected], None]] = []

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

    async def _call_authenticated(
        self, method: str, path: str, table: str, params: Mapping[str, str] | None, body: Mapping[str, Any] | None
    ) -> Any:
        try:
            try:
                return await self._call_once(method, path, table, params, body)
            except CredentialsRejected:
                if not self._auth.reload_secret_files():
                    raise
            return await self._call_once(method, path, table, params, body)
        except CredentialsRejected as error:
            for hook in self.on_credentials_rejected:
                hook(error)
            raise

    async def _call_once(
        self, method: str, path: str, table: str, params: Mapping[str, str] | None, body: Mapping[str, Any] | None
    ) -> Any:
        credential = await self._auth.credential()
        response = await self._send(method, path, table, params, body, credential)
        if response.status_code == 401 and credential.refreshable:
            # An OAuth token can be revoked or expire early: refresh it once, then give up.
            self._auth.invalidate(credential)
            credential = await self._auth.credential()
            response = await self._send(method, path, table, params, body, credential)
        return self._result(method, table, response)

    async def _send(
        self,
        method: str,
        path: str,
        table: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
        credential: Credential,
    ) -> httpx.Response:
        headers = {"Accept": "application/json", "Authorization": credential.header}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await self._http.request(
                method,
                f"{self._settings.url}{path}",
                params=dict(params or {}),
                content=None if body is None else json.dumps(body).encode(),
                headers=headers,
            )
        except httpx.TimeoutException:
            self.calls[(table, method, "timeout")] += 1
            raise TransientBackendError(
                f"ServiceNow did not answer {method} {table} within {self._settings.timeout_seconds:g}s"
            ) from None
        except httpx.TransportError as error:
            self.calls[(table, method, "error")] += 1
            raise TransientBackendError(
                f"cannot reach ServiceNow for {method} {table}: {type(error).__name__}"
            ) from None
        self.calls[(table, method, str(response.status_code))] += 1
        log.debug(
            "servicenow call",
            extra={"event": "servicenow_call", "method": method, "table": table, "status": response.status_code},
        )
        return response

    def _result(self, method: str, table: str, response: httpx.Response) -> Any:
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
        message = _error_message(response)
        if status == 429:
            retry_after = _retry_after(response, self._settings.retry_after_cap_seconds)
            raise RateLimited(f"ServiceNow rate limit on {method} {table}: {message}", retry_after=retry_after)
        if status == 401:
            raise CredentialsRejected(
                f"ServiceNow refused the credentials ({self._auth.mode.value}) on {method} {table}: "
                f"HTTP 401 {message}; check the SECURE_EXPORT_SERVICENOW_* credentials"
            )
        if status >= 500 or status == 408:
            raise TransientBackendError(f"ServiceNow failed {method} {table}: HTTP {status} {message}")
        raise PermanentBackendError(f"ServiceNow refused {method} {table}: HTTP {status} {message}")


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
        self.names = NameResolver(self._lookup_rows, ttl=settings.ci_cache_ttl_seconds, clock=clock)
        """Routing names (groups, services, callers) → sys_ids, with what did not resolve."""
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._http: _ServiceNowHttp | None = None
        self._auth: Authenticator | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: Counter[str] = Counter()
        self._ci_cache: dict[tuple[str, str], tuple[float, _CiMatch | None, str]] = {}
        self._close_code_checked = False
        self._config_problem: str | None = None
        self._visibility = IncidentVisibility()
        self._readiness: tuple[float, Readiness] | None = None

    @classmethod
    def from_env(cls, settings: object | None = None) -> ServiceNowBackend:
        """Build the backend from ``SECURE_EXPORT_SERVICENOW_*``.

        ``settings`` is the receiver's own settings object; this backend reads nothing from it.
        Raises :class:`ServiceNowSettingsError` naming each invalid or missing variable.
        """
        window = getattr(settings, "reopen_window", 3600.0)
        return cls(ServiceNowSettings.load(), reopen_window=float(window))

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP client and check ``close_code`` against the instance when it is reachable.

        An unreachable instance or refused credentials do not stop the receiver (alerts wait in the
        inbox, ``/readyz`` explains); a ``close_code`` the instance does not offer does.
        """
        settings = self.settings
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
            limits=httpx.Limits(max_connections=settings.max_connections),
            follow_redirects=False,
        )
        self._auth = Authenticator(settings, self._client, clock=self._clock)
        self._http = _ServiceNowHttp(settings, self._client, self._auth)
        self._http.on_credentials_rejected.append(self._remember_rejection)
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
                await self._check_close_code()
            except PermanentBackendError as error:
                self._config_problem = str(error)
                raise
            except TransientBackendError as error:
                log.warning(
                    "servicenow close_code check deferred until the instance answers",
                    extra={"event": "servicenow_close_code_deferred", "error": str(error)},
                )

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def readiness(self) -> Readiness:
        """Not ready when ServiceNow refuses the credentials or the configuration is wrong.

        An outage leaves the receiver ready on purpose: alerts must keep reaching the inbox, and the
        dispatcher retries. The probe result is cached for ``readiness_cache_seconds``.
        """
        if self._config_problem:
            return Readiness(False, self._config_problem)
        try:
            unreadable = await self._visibility.problem(self._any_incident)
        except (TransientBackendError, PermanentBackendError):
            unreadable = None  # the probe below says what is wrong with the instance
        if unreadable:
            return Readiness(False, unreadable)
        now = self._clock()
        if self._readiness is not None and now < self._readiness[0]:
            return self._with_routing_problems(self._readiness[1])
        table = "incident" if self.settings.target is Target.INCIDENT else "em_event"
        try:
            # Bounded below the receiver's own /readyz budget: a slow instance is an outage, not a
            # reason to take the receiver out of the load balancer.
            async with asyncio.timeout(self.settings.readiness_timeout_seconds):
                await self._api().call(
                    "GET",
                    f"/api/now/table/{table}",
                    table=table,
                    params={"sysparm_limit": "1", "sysparm_fields": "sys_id"},
                )
            result = Readiness(True)
        except CredentialsRejected as error:
            result = Readiness(False, str(error))
        except TimeoutError:
            result = Readiness(True, "ServiceNow is slow to answer; alerts wait in the inbox")
        except TransientBackendError as error:
            result = Readiness(True, f"ServiceNow unreachable, alerts wait in the inbox: {error}")
        except PermanentBackendError:
            result = Readiness(True)  # authenticated; the probe table may simply be hidden by an ACL
        self._readiness = (self._clock() + self.settings.readiness_cache_seconds, result)
        return self._with_routing_problems(result)

    def _with_routing_problems(self, result: Readiness) -> Readiness:
        """Ready or not as probed, with the routing names that do not resolve added to the reason."""
        problems = self.names.problems()
        if not problems:
            return result
        text = "; ".join(problems) + " (items go to the default group with a work note)"
        return Readiness(result.ready, f"{result.reason}; {text}" if result.reason else text)

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
        return dict(self._http.calls) if self._http else {}

    def bind_metrics(self, registry: Any) -> None:
        """Publish this backend's counters on the receiver's Prometheus ``registry`` (read at scrape time).

        ``secure_export_servicenow_http_requests_total{table,method,status}`` and
        ``secure_export_servicenow_token_requests_total{outcome}``. Labels are bounded: table names
        (``em_event`` for Event Management), HTTP methods and status codes; never a URL, query or
        credential.
        """
        registry.register(_ServiceNowCollector(self))

    @property
    def token_requests(self) -> int:
        """OAuth token requests so far (0 with basic auth)."""
        return self._auth.token_requests if self._auth else 0

    @property
    def token_outcomes(self) -> Mapping[str, int]:
        """OAuth token requests so far by outcome: ``ok``, ``refused`` or ``unavailable``."""
        return dict(self._auth.token_outcomes) if self._auth else {}

    # -- apply -------------------------------------------------------------------------------

    async def apply(self, event: AlertEvent) -> WorkItemRef | None:
        """Apply one delivery; idempotent per ``(alert_id, condition)``, serialised per correlation key.

        Returns the incident's number and link (``None`` for Event Management, whose own rules open
        the incidents, and for a Resolved whose incident was already closed).
        """
        async with self._key_lock(event.correlation_key):
            if self.settings.target is Target.INCIDENT:
                unreadable = await self._visibility.problem(self._any_incident)
                if unreadable:
                    raise TransientBackendError(unreadable)
            if self.settings.target is Target.EVENT:
                await self._post_event(event)
                return None
            if event.condition is Condition.FIRED:
                incident = await (self._recovered(event) if event.recovery else self._fired(event))
            elif event.lifecycle_reason is not None:
                incident = await self._resolve_for_receiver(event)
            else:
                incident = await self._resolved(event)
        return self._reference(incident)

    def _reference(self, incident: Mapping[str, Any] | None) -> WorkItemRef | None:
        if not incident or not incident.get("number"):
            return None
        sys_id = str(incident.get("sys_id") or "")
        url = f"{self.settings.url}/nav_to.do?uri=incident.do?sys_id={sys_id}" if _SYS_ID.fullmatch(sys_id) else None
        return WorkItemRef(str(incident["number"]), url)

    async def _fired(self, event: AlertEvent) -> dict[str, Any]:
        found = await self._lookup(event, history=True)
        corr, marker = found.corr, occurrence_marker(event.alert_id, Condition.FIRED)
        incident = found.open or found.resolved
        joining = False
        if incident is None and found.latest is not None and found.latest is not found.closed:
            latest = found.latest
            if (
                str(latest.get("state")) == STATE_RESOLVED
                and not found.others_open
                and self._within_window(latest, event)
            ):
                incident = latest  # the same rule on the same resources, resolved within the window: reopen
            elif str(latest.get("state")) not in INACTIVE_OR_RESOLVED and _truthy(latest.get("active")):
                markers = await self._noted_markers(latest)
                # Open with nothing firing and a held Resolved: flap damping keeps it open on purpose.
                # Without that marker it is another alert's incident mid-resolution: never take it over.
                if not _still_firing(markers) and is_held(markers):
                    incident, joining = latest, True
        if incident is None:
            record = await self._create_incident(event, corr, marker, follows=found.closed)
            log.info(
                "servicenow incident created",
                extra={
                    "event": "servicenow_incident_created",
                    "number": record.get("number"),
                    "correlation_id": corr,
                    "alert_id": event.alert_id,
                },
            )
            return record
        sys_id = str(incident["sys_id"])
        found_markers = await self._noted_markers(incident)
        if marker in found_markers:
            _log_replay(incident, event)
            return incident
        patch: dict[str, Any] = {"work_notes": self._occurrence_note(event, marker)}
        if incident.get("correlation_id") != corr:
            patch["correlation_id"] = corr  # the incident now answers to this alert's key
        # A Resolved incident re-fires within the window: reopen it, unless this very alert already
        # resolved (it arrived before its Fired): then the Fired is history and must not reopen anything.
        if str(incident.get("state")) == STATE_RESOLVED and (
            occurrence_marker(event.alert_id, Condition.RESOLVED) not in found_markers
        ):
            if incident is found.resolved and not self._within_window(incident, event):
                record = await self._create_incident(event, corr, marker, follows=incident, outside_window=True)
                return record
            patch["state"] = STATE_IN_PROGRESS
            patch["work_notes"] = f"{self._reopen_note(incident, event)}\n{patch['work_notes']}"
        elif joining:
            patch["work_notes"] = f"Fired again while flapping.\n{patch['work_notes']}"
        await self._patch_incident(sys_id, patch)
        log.info(
            "servicenow occurrence noted",
            extra={
                "event": "servicenow_occurrence",
                "number": incident.get("number"),
                "alert_id": event.alert_id,
                "reopened": "state" in patch,
            },
        )
        return incident

    async def _resolved(self, event: AlertEvent) -> dict[str, Any] | None:
        await self._check_close_code()
        found = await self._lookup(event)
        corr, marker = found.corr, occurrence_marker(event.alert_id, Condition.RESOLVED)
        incident = found.open or found.resolved
        if incident is None:
            if found.any:
                log.info(
                    "servicenow resolved: incident already closed",
                    extra={"event": "servicenow_already_closed", "correlation_id": corr, "alert_id": event.alert_id},
                )
                return None
            record = await self._create_incident(event, corr, marker, resolved=True)
            log.info(
                "servicenow resolved before fired: recorded a resolved incident",
                extra={
                    "event": "servicenow_resolved_before_fired",
                    "number": record.get("number"),
                    "alert_id": event.alert_id,
                },
            )
            return record
        sys_id = str(incident["sys_id"])
        found_markers = await self._noted_markers(incident)
        if marker in found_markers:
            _log_replay(incident, event)
            return incident
        still_firing = _still_firing(found_markers | {marker})
        note = f"Azure Monitor sent Resolved for alert {event.alert_id}."
        if still_firing:
            note += f" {len(still_firing)} grouped alert(s) still firing; the incident stays open."
        elif event.hold and str(incident.get("state")) not in INACTIVE_OR_RESOLVED:
            note = f"{event.hold}\n{held_marker(event.alert_id)}"
        fields: dict[str, Any] = {"work_notes": f"{note}\n{marker}"}
        # Already Resolved/Closed (by people, or earlier): only keep the group's bookkeeping.
        if not still_firing and not event.hold and str(incident.get("state")) not in INACTIVE_OR_RESOLVED:
            fields |= {
                "state": STATE_RESOLVED,
                "close_code": self.settings.close_code,
                "close_notes": self._close_notes(event, marker),
            }
        await self._patch_incident(sys_id, fields)
        log.info(
            "servicenow resolved noted",
            extra={
                "event": "servicenow_resolved",
                "number": incident.get("number"),
                "alert_id": event.alert_id,
                "incident_resolved": "state" in fields,
                "still_firing": len(still_firing),
                "held": bool(event.hold),
            },
        )
        return incident

    async def _recovered(self, event: AlertEvent) -> dict[str, Any] | None:
        """Resource health is ``Available`` again: resolve the open incident of that rule and resource."""
        found = await self._lookup(event, history=True)
        latest = found.latest
        if latest is None or str(latest.get("state")) in INACTIVE_OR_RESOLVED or not _truthy(latest.get("active")):
            log.info(
                "servicenow recovery with nothing open",
                extra={"event": "servicenow_recovery_nothing_open", "alert_id": event.alert_id},
            )
            return None
        where = ", ".join(event.configuration_items) or ", ".join(event.target_ids) or "the resource"
        return await self._resolve_whole(
            event, latest, f"Resolved: resource health reports {where} Available again (alert {event.alert_id})."
        )

    async def _resolve_for_receiver(self, event: AlertEvent) -> dict[str, Any] | None:
        """A resolution the receiver made (stateless TTL, quiet after flapping): the key's open incident."""
        found = await self._lookup(event)
        if found.open is None:
            return None  # resolved meanwhile, or never opened: nothing to do (a replay lands here too)
        return await self._resolve_whole(event, found.open, event.lifecycle_note or "Resolved by secure-export.")

    async def _resolve_whole(self, event: AlertEvent, incident: dict[str, Any], note: str) -> dict[str, Any]:
        await self._check_close_code()
        marker = occurrence_marker(event.alert_id, Condition.RESOLVED)
        markers = await self._noted_markers(incident)
        # Every alert still firing on it is resolved with it: its Resolved marker is noted too.
        resolved_markers = [f"semark-{digest}-resolved" for digest in sorted(_still_firing(markers))]
        references = "\n".join([*resolved_markers, marker])
        await self._patch_incident(
            str(incident["sys_id"]),
            {
                "work_notes": f"{note}\n{references}",
                "state": STATE_RESOLVED,
                "close_code": self.settings.close_code,
                "close_notes": f"{note}\nReference: {marker}",
            },
        )
        log.info(
            "servicenow incident resolved by the receiver",
            extra={
                "event": "servicenow_lifecycle_resolved",
                "number": incident.get("number"),
                "alert_id": event.alert_id,
                "reason": event.lifecycle_reason or "recovered",
            },
        )
        return incident

    def _within_window(self, incident: Mapping[str, Any], event: AlertEvent) -> bool:
        resolved_at = _servicenow_time(incident.get("resolved_at"))
        if resolved_at is None or self.reopen_window <= 0:
            return False
        fired_at = event.fired_at or datetime.now(UTC)
        return (fired_at - resolved_at).total_seconds() <= self.reopen_window

    def _reopen_note(self, incident: Mapping[str, Any], event: AlertEvent) -> str:
        from secure_export.durations import format_duration

        return (
            f"Reopened: Azure Monitor fired alert {event.alert_id} again within the reopen window "
            f"({format_duration(self.reopen_window)}, SECURE_EXPORT_REOPEN_WINDOW) after this incident was resolved "
            f"at {incident.get('resolved_at')} UTC."
        )

    # -- incidents ---------------------------------------------------------------------------

    async def _lookup(self, event: AlertEvent, *, history: bool = False) -> _Found:
        """This key's incidents and, with ``history``, the latest incidents of the same rule and targets.

        Two bounded queries, not one with ``^OR``: the newest incidents of a busy rule would crowd
        this key's own out of a limited page. The second is skipped when it would read the same rows
        (``rule-target`` keys are the rule and targets).
        """
        corr = correlation_id(event.correlation_key)
        mine = await self._incident_rows(f"correlation_id={corr}^ORDERBYDESCnumber", "correlation_id", corr)
        active = [row for row in mine if _truthy(row.get("active"))]
        open_ = [row for row in active if str(row.get("state")) not in INACTIVE_OR_RESOLVED]
        if len(open_) > 1:
            numbers = ", ".join(str(row.get("number")) for row in open_)
            raise PermanentBackendError(
                f"ServiceNow holds more than one open incident with correlation_id {corr} ({numbers}); "
                "resolve or cancel the duplicates, then retry this work item"
            )
        resolved = next((row for row in active if str(row.get("state")) == STATE_RESOLVED), None)
        rows: list[dict[str, Any]] = []
        if history and event.lifecycle_key:
            lc = lifecycle_id(event.lifecycle_key)
            if event.lifecycle_key == event.correlation_key:
                rows = mine
            elif not open_ and resolved is None:
                rows = await self._incident_rows(
                    f"correlation_display={lc}^ORDERBYDESCnumber", "correlation_display", lc
                )
        latest = rows[0] if rows else None
        closed = latest if latest is not None and str(latest.get("state")) in ("7", "8") else None
        if closed is None:
            closed = next((row for row in mine if str(row.get("state")) in ("7", "8")), None)
        # Other instances of the rule still open (one per metric dimension): a new one is not a re-fire.
        others_open = any(
            _truthy(row.get("active")) and str(row.get("state")) not in INACTIVE_OR_RESOLVED for row in rows[1:]
        )
        return _Found(corr, open_[0] if open_ else None, resolved, bool(mine), latest, closed, others_open)

    async def _incident_rows(self, query: str, field: str, value: str) -> list[dict[str, Any]]:
        rows = await self._query("incident", query, _INCIDENT_FIELDS, limit=_LOOKUP_LIMIT)
        # Every row is checked: ServiceNow drops query parts it does not understand. The sys_id goes
        # into a path and a query next.
        return [row for row in rows if row.get(field) == value and _SYS_ID.fullmatch(str(row.get("sys_id", "")))]

    async def _any_incident(self, corr: str) -> bool:
        rows = await self._query("incident", f"correlation_id={corr}", "sys_id,correlation_id")
        return any(row.get("correlation_id") == corr for row in rows)

    async def _noted_markers(self, incident: dict[str, Any]) -> set[str]:
        """Occurrence markers the incident already carries: in its work notes and its close notes."""
        return await self._markers(str(incident["sys_id"])) | _markers_in(incident.get("close_notes"))

    async def _markers(self, sys_id: str) -> set[str]:
        """Every occurrence marker in the incident's work notes (read from ``sys_journal_field``).

        Where an ACL refuses ``sys_journal_field`` the answer is empty (logged): a replayed Fired may
        then add its note twice, and a grouped incident resolves on its first Resolved.
        """
        found: set[str] = set()
        for page in range(_MARKER_PAGES):
            try:
                rows = await self._query(
                    "sys_journal_field",
                    f"element_id={sys_id}^element=work_notes^valueLIKEsemark-^ORDERBYsys_created_on",
                    "element_id,value",
                    limit=_MARKER_PAGE,
                    offset=page * _MARKER_PAGE,
                )
            except PermanentBackendError as error:
                log.warning(
                    "servicenow cannot read work notes from sys_journal_field; replays are recognised less well",
                    extra={"event": "servicenow_journal_unreadable", "error": str(error)},
                )
                return found
            for row in rows:
                if row.get("element_id") == sys_id:
                    found |= _markers_in(row.get("value"))
            if len(rows) < _MARKER_PAGE:
                break
        return found

    async def _create_incident(
        self,
        event: AlertEvent,
        corr: str,
        marker: str,
        *,
        resolved: bool = False,
        follows: Mapping[str, Any] | None = None,
        outside_window: bool = False,
    ) -> dict[str, Any]:
        settings = self.settings
        bound, ci_lines = await self._bind_cis(event)
        levels = settings.impact_urgency(event.severity)
        route = event.route
        routed = await self.names.routed_fields(event, settings.assignment_group)
        notes = list(routed.notes)
        if follows is not None and follows.get("number"):
            if outside_window:
                notes.append(f"Follows {follows.get('number')}, resolved longer ago than the reopen window.")
            else:
                notes.append(
                    f"Follows {follows.get('number')}, which a person closed; closed incidents are never reopened."
                )
        opening = self._occurrence_note(event, marker, opened=True)
        record: dict[str, Any] = {
            "short_description": self._short_description(event),
            "description": self._description(event, ci_lines),
            # A route's impact and urgency beat the severity map.
            "urgency": str(route.urgency if route is not None and route.urgency else levels.urgency),
            "impact": str(route.impact if route is not None and route.impact else levels.impact),
            "correlation_id": corr,
            "correlation_display": lifecycle_id(event.lifecycle_key or event.correlation_key),
            "work_notes": "\n".join([*notes, opening]),
        }
        if bound is not None:
            record["cmdb_ci"] = bound.sys_id
        optional = {
            "category": settings.category,
            "caller_id": settings.caller,
            "contact_type": settings.contact_type,
        }
        record |= {field: value for field, value in optional.items() if value}
        record |= routed.fields
        if resolved:
            record |= {
                "state": STATE_RESOLVED,
                "close_code": settings.close_code,
                "close_notes": self._close_notes(event, marker, before_fired=True),
            }
        result = await self._api().call(
            "POST",
            "/api/now/table/incident",
            table="incident",
            params={"sysparm_fields": "sys_id,number,state", "sysparm_exclude_reference_link": "true"},
            body=record,
        )
        created = result if isinstance(result, dict) else {}
        await self._visibility.after_create(corr, str(created.get("number") or "?"), self._any_incident)
        return created

    async def _patch_incident(self, sys_id: str, fields: Mapping[str, Any]) -> None:
        await self._api().call(
            "PATCH",
            f"/api/now/table/incident/{sys_id}",
            table="incident",
            params={"sysparm_fields": "sys_id,number,state", "sysparm_exclude_reference_link": "true"},
            body=fields,
        )

    async def _check_close_code(self) -> None:
        if self._close_code_checked or self.settings.target is not Target.INCIDENT:
            return
        try:
            rows = await self._query(
                "sys_choice", "name=incident^element=close_code^inactive=false", "value,label,name,element", limit=200
            )
        except PermanentBackendError as error:
            # An ACL may hide sys_choice from the integration user; that is no reason to stop.
            log.warning(
                "servicenow cannot read sys_choice; using close_code unchecked",
                extra={
                    "event": "servicenow_close_code_unchecked",
                    "close_code": self.settings.close_code,
                    "error": str(error),
                },
            )
            self._close_code_checked = True
            return
        choices = [
            str(row.get("value"))
            for row in rows
            if row.get("name") == "incident" and row.get("element") == "close_code"
        ]
        code = self.settings.close_code
        if choices and code not in choices:
            self._config_problem = (
                f"SECURE_EXPORT_SERVICENOW_CLOSE_CODE={code!r} is not an active close_code choice for "
                f"incident on {self.settings.url}; choose one of: {', '.join(sorted(choices))} (the choices "
                "this user can read: if a read ACL hides some sys_choice rows, grant it read access to them)"
            )
            raise PermanentBackendError(self._config_problem)
        if not choices:
            log.warning(
                "servicenow sys_choice lists no close_code for incident (ACL?); using close_code unchecked",
                extra={"event": "servicenow_close_code_unchecked", "close_code": code},
            )
        self._close_code_checked = True

    # -- CMDB --------------------------------------------------------------------------------

    async def _bind_cis(self, event: AlertEvent) -> tuple[_CiMatch | None, list[str]]:
        """Look every resource id and CI name up; the first match is bound, all are described."""
        settings = self.settings
        outcomes: list[_CiOutcome] = []
        for resource_id in event.target_ids:
            outcomes.append(await self._lookup_ci(settings.ci_lookup_field, resource_id))
        seen = {o.match.name.casefold() for o in outcomes if o.match}
        for name in event.configuration_items:
            if name.casefold() in seen:
                continue
            outcomes.append(await self._lookup_ci("name", name))
        if settings.create_cis and not any(o.match for o in outcomes):
            outcomes = [await self._create_ci(event)] + outcomes
        bound = next((o.match for o in outcomes if o.match), None)
        lines = [f"{o.label}: {o.note}" for o in outcomes]
        return bound, lines

    async def _lookup_ci(self, field: str, value: str) -> _CiOutcome:
        label = f"{field} {value!r}"
        if not query_safe(value):
            return _CiOutcome(label, None, "not looked up (characters outside [A-Za-z0-9._:/-])")
        key = (field, value.casefold())
        cached = self._ci_cache.get(key)
        if cached is not None and cached[0] > self._clock():
            return _CiOutcome(label, cached[1], cached[2])
        table = self.settings.ci_table
        fields = ",".join(dict.fromkeys(("sys_id", "name", "sys_class_name", field)))
        rows = await self._query(table, f"{field}={value}", fields)
        matching = [row for row in rows if str(row.get(field, "")).casefold() == value.casefold()]
        match: _CiMatch | None = None
        if len(matching) == 1:
            row = matching[0]
            match = _CiMatch(str(row["sys_id"]), str(row.get("name") or value))
            note = f"{match.name} ({row.get('sys_class_name') or table}, sys_id {match.sys_id})"
        elif matching:
            note = "ambiguous: several CIs match, none bound"
        else:
            note = "not found in the CMDB"
        self._remember_ci(key, match, note)
        return _CiOutcome(label, match, note)

    def _remember_ci(self, key: tuple[str, str], match: _CiMatch | None, note: str) -> None:
        now = self._clock()
        if len(self._ci_cache) >= _CI_CACHE_MAX:
            # Bounded: drop what expired, and if every entry is still fresh, start over.
            self._ci_cache = {k: v for k, v in self._ci_cache.items() if v[0] > now}
            if len(self._ci_cache) >= _CI_CACHE_MAX:
                self._ci_cache.clear()
        self._ci_cache[key] = (now + self.settings.ci_cache_ttl_seconds, match, note)

    async def _create_ci(self, event: AlertEvent) -> _CiOutcome:
        resource_id = next((r for r in event.target_ids if query_safe(r)), None)
        name = next((n for n in event.configuration_items if query_safe(n)), None)
        if name is None and resource_id is not None:
            name = resource_id.rstrip("/").rsplit("/", 1)[-1]
        if name is None:
            return _CiOutcome("new CI", None, "not created: no usable name")
        record = {"name": name}
        if resource_id is not None:
            record[self.settings.ci_lookup_field] = resource_id
        table = self.settings.ci_table
        result = await self._api().call(
            "POST", f"/api/now/table/{table}", table=table, params={"sysparm_fields": "sys_id,name"}, body=record
        )
        sys_id = str(result.get("sys_id")) if isinstance(result, dict) else ""
        if not sys_id:
            return _CiOutcome(f"new CI {name}", None, "not created: ServiceNow returned no sys_id")
        match = _CiMatch(sys_id, name)
        self._ci_cache.pop((self.settings.ci_lookup_field, (resource_id or "").casefold()), None)
        self._ci_cache.pop(("name", name.casefold()), None)
        log.info("servicenow ci created", extra={"event": "servicenow_ci_created", "ci_name": name, "sys_id": sys_id})
        return _CiOutcome(f"new CI {name}", match, f"created in {table} (sys_id {sys_id})")

    # -- events ------------------------------------------------------------------------------

    async def _post_event(self, event: AlertEvent) -> None:
        resolved = event.condition is Condition.RESOLVED
        names = [n for n in event.configuration_items if n]
        resource = event.target_ids[0].rstrip("/").rsplit("/", 1)[-1] if event.target_ids else ""
        when = (event.resolved_at if resolved else event.fired_at) or datetime.now(UTC)
        record = {
            "source": self.settings.event_source[:100],
            "event_class": "secure-export",
            "node": (names[0] if names else resource)[:100],
            "type": (event.signal_type or "Azure Monitor alert")[:100],
            "resource": resource[:100],
            "metric_name": event.rule[:100],
            "message_key": correlation_id(event.correlation_key),
            "severity": "0" if resolved else str(self.settings.event_severity(event.severity)),
            "resolution_state": "Closing" if resolved else "New",
            "time_of_event": when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "description": self._description(event, [])[:4000],
            "additional_info": json.dumps(_additional_info(event), sort_keys=True),
        }
        await self._api().call("POST", "/api/global/em/jsonv2", table="em_event", body={"records": [record]})
        log.info(
            "servicenow event posted",
            extra={
                "event": "servicenow_event_posted",
                "message_key": record["message_key"],
                "severity": record["severity"],
                "alert_id": event.alert_id,
            },
        )

    # -- text --------------------------------------------------------------------------------

    def _short_description(self, event: AlertEvent) -> str:
        return alert_text.summary(event, 160)

    def _description(self, event: AlertEvent, ci_lines: Sequence[str]) -> str:
        return alert_text.description(event, ci_lines)

    def _occurrence_note(self, event: AlertEvent, marker: str, *, opened: bool = False) -> str:
        what = "Opened for" if opened else "Occurrence of"
        when = f" at {event.fired_at.isoformat()}" if event.fired_at else ""
        if event.condition is Condition.RESOLVED:
            return f"Azure Monitor sent Resolved for alert {event.alert_id}{when} before its Fired.\n{marker}"
        summary = f"\n{event.condition_summary}" if event.condition_summary else ""
        return f"{what} Azure Monitor alert {event.alert_id} (Fired{when}).{summary}\n{marker}"

    def _close_notes(self, event: AlertEvent, marker: str, *, before_fired: bool = False) -> str:
        when = f" at {event.resolved_at.isoformat()}" if event.resolved_at else ""
        text = f"Resolved by Azure Monitor: monitorCondition=Resolved{when} for alert {event.alert_id}."
        if before_fired:
            text += (
                " Resolved arrived before Fired was applied; recorded as resolved so that the late Fired opens nothing."
            )
        # The marker here too: close_notes reads back through the Table API even where an ACL
        # hides sys_journal_field, so a late Fired still knows its alert already resolved.
        return f"{text}\nReference: {marker}"

    # -- helpers -----------------------------------------------------------------------------

    async def _lookup_rows(self, table: str, query: str, fields: str) -> list[dict[str, Any]]:
        """Rows for a routing name lookup (a few: an exact match is checked by the resolver)."""
        return await self._query(table, query, fields, limit=5)

    async def _query(
        self, table: str, query: str, fields: str, *, limit: int = 2, offset: int = 0
    ) -> list[dict[str, Any]]:
        result = await self._api().call(
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

    def _api(self) -> _ServiceNowHttp:
        if self._http is None:
            raise TransientBackendError("ServiceNow backend not started")
        return self._http

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


class _ServiceNowCollector:
    """Prometheus collector over a backend's live counters (a ``prometheus_client`` custom collector)."""

    def __init__(self, backend: ServiceNowBackend) -> None:
        self._backend = backend

    def collect(self) -> Iterator[Any]:
        """The counter families, built from the backend's counters at scrape time."""
        from prometheus_client.core import CounterMetricFamily  # only a receiver with metrics needs it

        calls = CounterMetricFamily(
            "secure_export_servicenow_http_requests",
            "ServiceNow REST API requests by table (em_event for Event Management), HTTP method and status "
            "(HTTP code, timeout or error); OAuth token requests are counted separately",
            labels=["table", "method", "status"],
        )
        for (table, method, status), count in sorted(self._backend.http_calls_by_method.items()):
            calls.add_metric([table, method, status], float(count))
        yield calls
        tokens = CounterMetricFamily(
            "secure_export_servicenow_token_requests",
            "OAuth token requests to ServiceNow's /oauth_token.do by outcome: ok, refused (credentials "
            "rejected) or unavailable (timeout, connection error, 429 or 5xx); none with basic auth",
            labels=["outcome"],
        )
        for outcome, count in sorted(self._backend.token_outcomes.items()):
            tokens.add_metric([outcome], float(count))
        yield tokens
        from prometheus_client.core import GaugeMetricFamily

        unresolved = GaugeMetricFamily(
            "secure_export_routing_unresolved_names",
            "Routing names (assignment groups, business services, callers) that do not resolve in ServiceNow: "
            "1 per name, by kind (their items go to the default group with a work note); names come from "
            "the routing file, so the label set is bounded",
            labels=["kind", "name"],
        )
        for kind, name in sorted(self._backend.names.unresolved):
            unresolved.add_metric([kind, name], 1.0)
        yield unresolved


def _log_replay(incident: dict[str, Any], event: AlertEvent) -> None:
    log.info(
        f"servicenow {str(event.condition).lower()} already noted (replay)",
        extra={
            "event": "servicenow_replay",
            "number": incident.get("number"),
            "alert_id": event.alert_id,
            "condition": str(event.condition),
        },
    )


def _servicenow_time(value: Any) -> datetime | None:
    """``2026-11-26 06:10:00`` (the Table API's UTC, with ``sysparm_display_value=false``) as a datetime."""
    try:
        return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _additional_info(event: AlertEvent) -> dict[str, str]:
    """The alert's essentials as ``em_event.additional_info`` wants them: every value a string."""
    info: dict[str, str] = {}
    for key, value in event.essentials.items():
        if value is None:
            continue
        if isinstance(value, str):
            info[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            info[key] = ",".join(value)
        else:
            info[key] = json.dumps(value, sort_keys=True, default=str)
    info.setdefault("alertId", event.alert_id)
    info.setdefault("alertRule", event.rule)
    info.setdefault("monitorCondition", str(event.condition))
    if event.severity:
        info.setdefault("severity", event.severity)
    if event.target_ids:
        info.setdefault("alertTargetIDs", ",".join(event.target_ids))
    if event.configuration_items:
        info.setdefault("configurationItems", ",".join(event.configuration_items))
    if event.investigation_link:
        info.setdefault("investigationLink", event.investigation_link)
    if event.condition_summary:
        info["conditionSummary"] = event.condition_summary
    info["correlationKey"] = event.correlation_key
    return info


def _error_message(response: httpx.Response) -> str:
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
