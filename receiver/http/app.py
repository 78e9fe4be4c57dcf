"""The receiver's ASGI application: ``POST /api/alerts``, ``/healthz``, ``/readyz``, ``/metrics``.

Why Starlette and not FastAPI: the service has four routes and one hot path whose whole job is
"check size, type and token, parse once, commit, answer". FastAPI would add request/response
model validation, dependency injection and OpenAPI generation on every call, and it would parse
the body a second time; the common alert schema is already validated by ``receiver.alerts.schema``
(pydantic) exactly once. Starlette gives routing, lifespan and streaming bodies with the least
work per request, which is what the throughput target (close to a bare handler) needs.

The order of checks in ``POST /api/alerts`` (cheapest and least trusting first):

1. size: ``Content-Length`` above ``SECURE_EXPORT_MAX_BODY_BYTES`` → 413 (the body is not read);
2. ``Content-Type`` not ``application/json`` (``; charset=utf-8`` accepted) → 415;
3. token → 401 (with ``WWW-Authenticate: Bearer error="invalid_token"``) or 403 — *before* the
   body is read, so unauthenticated callers cost no parsing; 503 with ``Retry-After`` when its
   ``kid`` is unknown and the key set cannot be refreshed yet (``receiver.auth``);
4. the streamed body over the limit (no or lying ``Content-Length``) → 413;
5. not JSON (incl. not UTF-8, nesting too deep, huge numbers) → 400; JSON but not the common schema
   (also an array, a string, a number) → 422;
6. subscription allow-list → 403;
7. the inbox cannot commit → 503 with ``Retry-After`` (Azure retries 503);
8. committed → 202 ``{"status":"accepted","alertId":..,"monitorCondition":..,"duplicate":bool}``.

No answer is ever a 500 or carries a stack trace: an unexpected exception anywhere is logged
(with its traceback, in the logs only) and answered ``503 {"error":"unavailable"}`` — a bug is
then "try again" for Azure, which retries 503, rather than a lost alert. Unknown paths get 404
and wrong methods 405, both with JSON bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.alerts.events import SYNTHETIC_ALERT_PREFIX
from receiver.alerts.schema import AlertParseError, parse_alert
from receiver.auth.errors import AuthError
from receiver.auth.jwks import JwksCache
from receiver.auth.subscriptions import alert_subscriptions, check_subscriptions
from receiver.auth.tokens import AuthPolicy, TokenVerifier, single_authorization
from receiver.dispatch.dispatcher import Dispatcher
from receiver.dispatch.lifecycle import Lifecycle
from receiver.dispatch.routing import load_configured
from receiver.itsm.base import Backend, PermanentBackendError
from receiver.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from receiver.observability.metrics import ReceiverMetrics, route_label
from receiver.settings import ReceiverSettings
from receiver.storage import InboxStore
from receiver.storage.records import InboxUnavailable

log = logging.getLogger(__name__)

JSON = "application/json"
RETRY_AFTER_SECONDS = "5"
READINESS_TIMEOUT_SECONDS = 3.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _json(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(),
        status_code=status,
        headers=headers,
        media_type=JSON,
    )


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    """The JSON error body of DESIGN.md: ``{"error": code, "detail": detail}``."""
    return _json(status, {"error": code, "detail": detail}, headers)


def _content_type_ok(value: str | None) -> bool:
    """``application/json`` with no charset or a UTF-8 one (JSON is UTF-8, RFC 8259)."""
    if not value:
        return False
    media, _, params = value.partition(";")
    if media.strip().lower() != JSON:
        return False
    for param in params.split(";"):
        name, _, arg = param.partition("=")
        if name.strip().lower() == "charset" and arg.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


@dataclass
class Runtime:
    """Everything one app owns; reachable as ``app.state.receiver`` (tests, demo, benchmarks)."""

    settings: ReceiverSettings
    backend: Backend
    verifier: TokenVerifier
    jwks: JwksCache
    owns_jwks: bool
    inbox: InboxStore
    dispatcher: Dispatcher
    metrics: ReceiverMetrics
    ops_watcher: Any = None
    """The :class:`~receiver.dispatch.ops_watch.OpsWatcher` while the app runs."""
    dispatch_lease: Any = None
    """PostgreSQL: the :class:`~receiver.storage.postgres.lease.DispatchLease` of this replica."""
    shutting_down: bool = False
    started: bool = False
    in_flight: int = 0
    startup_error: Exception | None = None
    """Why the lifespan's start failed (logged once, as one line); the runner picks its exit code."""


async def _answer_unhandled(scope: Scope, receive: Receive, send: Send, *, answered: bool) -> bool:
    """Log an escaped exception and, unless an answer already started, answer 503 so Azure retries.

    Returns whether the 503 was sent. The traceback goes to the log only, never to the caller.
    """
    log.exception(
        "unhandled error while answering a request", extra={"event": "unhandled_error", "path": scope.get("path")}
    )
    if answered:
        return False
    response = error_response(
        503, "unavailable", "the receiver hit an internal problem; retry later", {"Retry-After": RETRY_AFTER_SECONDS}
    )
    with contextlib.suppress(Exception):
        await response(scope, receive, send)
    return True


class _Guard:
    """Outermost middleware: counts and times every answer; turns any escaped exception into 503."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        runtime = self.runtime

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        runtime.in_flight += 1
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:  # noqa: BLE001 - the one place that guarantees "no 500"
            if await _answer_unhandled(scope, receive, send, answered=status != 0):
                status = 503
        finally:
            runtime.in_flight -= 1
            runtime.metrics.answered(route_label(scope.get("path", "")), status, time.perf_counter() - started)


class _Disconnected(Exception):
    """The client went away before its body arrived: there is no one to answer."""


_JSON_HEADER = (b"content-type", b"application/json")
_CONTENT_TYPE_MEMO = 32


def _response_start(status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> Message:
    """The ASGI start message of a JSON answer of ``body``, with any extra ``headers``."""
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [_JSON_HEADER, (b"content-length", str(len(body)).encode()), *headers],
    }


def _encode(payload: dict[str, Any]) -> bytes:
    # orjson writes the same compact UTF-8 JSON as json.dumps(ensure_ascii=False, separators=(",", ":")),
    # in a fraction of the time (this runs once per request).
    return orjson.dumps(payload)


class AlertEndpoint:
    """``POST /api/alerts`` as a plain ASGI app: the hot path, without per-request wrappers.

    It reads the three headers it needs straight from the ASGI scope, streams the body with a
    running size check and sends pre-encoded JSON; the checks and their order are those of the
    module docstring.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._route = route_label("/api/alerts")
        settings = runtime.settings
        self.limit = settings.max_body_bytes
        self.allowed_subscriptions = settings.allowed_subscriptions
        self.verifier = runtime.verifier
        self.inbox = runtime.inbox
        self.metrics = runtime.metrics
        self.put_timeout = settings.inbox_busy_timeout_seconds * 2 + 5.0
        self._too_large = _encode(
            {"error": "payload_too_large", "detail": f"the body is larger than the limit of {self.limit} bytes"}
        )
        self._unsupported = _encode(
            {"error": "unsupported_media_type", "detail": "the body must be sent as Content-Type: application/json"}
        )
        self._unavailable = _encode(
            {"error": "inbox_unavailable", "detail": "the alert could not be stored durably right now; retry later"}
        )
        self._content_types: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, body, headers = await self._handle(scope, receive)
        except _Disconnected:
            return
        await send(_response_start(status, body, headers))
        await send({"type": "http.response.body", "body": body})

    async def guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """:meth:`__call__` with what :class:`_Guard` gives every other route, inlined.

        Counted, timed, and any exception answered 503 while nothing was sent yet — without a
        wrapper around every ``send`` (the endpoint knows its own status): this is the hot path.
        """
        started = time.perf_counter()
        runtime = self.runtime
        runtime.in_flight += 1
        status = 0
        sent_start = False
        try:
            try:
                answer_status, body, headers = await self._handle(scope, receive)
            except _Disconnected:
                return
            await send(_response_start(answer_status, body, headers))
            sent_start, status = True, answer_status
            await send({"type": "http.response.body", "body": body})
        except Exception:  # noqa: BLE001 - the one place that guarantees "no 500" on this path
            if await _answer_unhandled(scope, receive, send, answered=sent_start):
                status = 503
        finally:
            runtime.in_flight -= 1
            runtime.metrics.answered(self._route, status, time.perf_counter() - started)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The body, or ``None`` as soon as it grows past the limit (the rest is not read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        length = content_type = None
        authorizations: list[str] = []
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
            elif name == b"authorization":
                authorizations.append(value.decode("latin-1"))
        if length is not None:
            try:
                if int(length) > self.limit:
                    return 413, self._too_large, []
            except ValueError:
                return 400, _encode({"error": "bad_request", "detail": "Content-Length is not a number"}), []
        if content_type is None:
            return 415, self._unsupported, []
        type_ok = self._content_types.get(content_type)
        if type_ok is None:
            type_ok = _content_type_ok(content_type.decode("latin-1"))
            # Senders use one or two spellings; the bound keeps odd callers from growing it.
            if len(self._content_types) < _CONTENT_TYPE_MEMO:
                self._content_types[content_type] = type_ok
        if not type_ok:
            return 415, self._unsupported, []
        try:
            # Several Authorization headers are refused: a proxy and this service could each read another.
            await self.verifier.verify(single_authorization(authorizations))
        except AuthError as error:
            log.info(
                "request refused",
                extra={"event": "auth_refused", "status": error.status, "code": error.code, "reason": error.detail},
            )
            return error.status, _encode(error.to_json()), _header_list(error.headers)
        body = await self._read_body(receive)
        if body is None:
            return 413, self._too_large, []
        try:
            alert = parse_alert(body)
        except AlertParseError as error:
            return error.status, _encode({"error": error.code, "detail": error.detail}), []
        essentials = alert.data.essentials
        alert_id = essentials.alert_id
        condition = essentials.monitor_condition
        if alert_id.startswith(SYNTHETIC_ALERT_PREFIX):
            # Only the receiver writes such rows (receiver.dispatch.lifecycle): a caller must not resolve items with them.
            detail = f"alertId must not start with {SYNTHETIC_ALERT_PREFIX!r}"
            return 422, _encode({"error": "not_common_alert_schema", "detail": detail}), []
        if self.allowed_subscriptions is not None:
            try:
                check_subscriptions(
                    alert_subscriptions(alert_id, essentials.alert_target_ids), self.allowed_subscriptions
                )
            except AuthError as error:
                log.info(
                    "alert refused by subscription allow-list",
                    extra={"event": "subscription_refused", "alert_id": alert_id, "reason": error.detail},
                )
                return error.status, _encode(error.to_json()), _header_list(error.headers)
        try:
            result = await self.inbox.put(alert_id, condition, body, alert=alert, timeout=self.put_timeout)
        except (InboxUnavailable, TimeoutError) as error:
            log.warning(
                "inbox unavailable; answered 503",
                extra={"event": "inbox_unavailable", "alert_id": alert_id, "error": str(error) or "timeout"},
            )
            return 503, self._unavailable, [(b"retry-after", RETRY_AFTER_SECONDS.encode())]
        duplicate = result.duplicate
        self.metrics.child(self.metrics.alerts_accepted, condition, "true" if duplicate else "false").inc()
        # DEBUG, not INFO: the inbox row (received_at, body) is already the durable record of
        # every accepted alert, and a log line per alert would cost the hot path ~10% of its CPU.
        log.debug(
            "alert accepted",
            extra={"event": "alert_accepted", "alert_id": alert_id, "condition": condition, "duplicate": duplicate},
        )
        return (
            202,
            _encode({"status": "accepted", "alertId": alert_id, "monitorCondition": condition, "duplicate": duplicate}),
            [],
        )


def _header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def _make_readyz(runtime: Runtime, *, detailed: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """``/readyz``: the reasons in the body, or (``detailed=False``, the public port when an ops port
    is set) only the status, so the internet learns nothing about the backend or the keys."""

    async def readyz(request: Request) -> Response:
        problems: list[str] = []
        warnings: list[str] = []
        if runtime.shutting_down:
            problems.append("shutting down")
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                await runtime.inbox.probe()
        except (InboxUnavailable, TimeoutError) as error:
            problems.append(f"inbox not writable: {error or 'timed out'}")
        if not runtime.jwks.loaded:
            reason = getattr(runtime.jwks, "last_error", None)
            problems.append("signing keys not loaded" + (f": {reason}" if reason else ""))
        if runtime.dispatcher.backend_error:
            problems.append(runtime.dispatcher.backend_error)
        else:
            try:
                async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                    readiness = await runtime.backend.readiness()
                if not readiness.ready:
                    problems.append(
                        f"backend {runtime.backend.name} not ready: {readiness.reason or 'no reason given'}"
                    )
                elif readiness.reason:
                    warnings.append(f"backend {runtime.backend.name}: {readiness.reason}")
            except TimeoutError:
                problems.append(f"backend {runtime.backend.name} readiness check timed out")
        if problems:
            if not detailed:
                return error_response(503, "not_ready", "not ready; the reasons are on the ops port")
            return error_response(503, "not_ready", "; ".join(problems))
        if warnings and detailed:
            # Ready, but something needs a person (e.g. a routing name ServiceNow does not know).
            return _json(200, {"status": "ready", "warnings": warnings})
        return _json(200, {"status": "ready"})

    return readyz


async def _healthz(request: Request) -> Response:
    return _json(200, {"status": "ok"})


def _make_metrics(runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        return Response(runtime.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return metrics


_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    detail = {404: f"no route {request.url.path!r}", 405: f"method {request.method} is not allowed here"}.get(
        exc.status_code, str(exc.detail)
    )
    return error_response(exc.status_code, code, detail, dict(exc.headers or {}))


class ReceiverApp(Starlette):
    """Starlette, with ``POST /api/alerts`` handed straight to its guarded endpoint.

    The hot path skips the generic error, exception and routing layers (and their wrappers
    around every ``send``); it keeps what they would give it: :class:`_Guard` counts the answer and
    turns any exception into a 503. Every other request goes through Starlette as usual (the
    route is registered there too, so ``GET /api/alerts`` gets its 405).
    """

    def __init__(self, *, alerts: Callable[[Scope, Receive, Send], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._alerts = alerts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == "http" and scope["path"] == "/api/alerts" and scope["method"] == "POST":
            scope["app"] = self
            await self._alerts(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, _without_startup_traceback(send))
            return
        await super().__call__(scope, receive, send)


def _without_startup_traceback(send: Send) -> Send:
    """``send`` for the lifespan, minus the traceback Starlette attaches to a failed start.

    The lifespan already logged why it failed, as one line; the server would log the traceback
    as a second, multi-line message.
    """

    async def quiet_send(message: Message) -> None:
        if message["type"] == "lifespan.startup.failed":
            message = {**message, "message": ""}
        await send(message)

    return quiet_send


def create_app(
    settings: ReceiverSettings,
    *,
    backend: Backend | None = None,
    verifier: TokenVerifier | None = None,
) -> Starlette:
    """The receiver as an ASGI app.

    ``backend`` defaults to :func:`receiver.itsm.create_backend`; ``verifier`` to one built from
    the settings with its own :class:`JwksCache`, which the app starts and closes. An injected
    verifier's key cache (``verifier.keys``) is started if it has no keys yet and left open at
    shutdown (its owner closes it). The lifespan opens the inbox, starts the backend, the keys
    and the dispatcher; at shutdown (after uvicorn finished the requests in flight) it stops the
    dispatcher, drains the inbox writer, and closes the backend and the keys.
    """
    if backend is None:
        from receiver.itsm import create_backend

        backend = create_backend(settings)
    owns_jwks = verifier is None
    if verifier is None:
        jwks = JwksCache(
            settings.jwks_uri,
            refresh_interval=settings.jwks_refresh_seconds,
            min_unknown_kid_interval=settings.jwks_min_refetch_seconds,
        )
        policy = AuthPolicy(
            tenant_id=settings.tenant_id,
            audiences=settings.audiences,
            allowed_callers=settings.allowed_callers,
            required_role=settings.required_role,
            clock_skew_seconds=settings.clock_skew_seconds,
        )
        verifier = TokenVerifier(policy, jwks, cache_size=settings.token_cache_size)
    else:
        jwks = verifier.keys
    metrics = ReceiverMetrics()
    from receiver.storage import is_postgres, open_store
    from receiver.storage.postgres.connect import redact

    inbox = open_store(
        settings.db,
        db_auth=settings.db_auth,
        busy_timeout=settings.inbox_busy_timeout_seconds,
        retention_seconds=settings.inbox_retention_days * 86400 if settings.inbox_retention_days else None,
        discarded_retention_seconds=(
            settings.inbox_discarded_retention_days * 86400 if settings.inbox_discarded_retention_days else None
        ),
    )
    dispatcher = Dispatcher(
        inbox,
        backend,
        correlation=settings.correlation,
        max_attempts=settings.dispatch_max_attempts,
        backoff_base=settings.dispatch_backoff_base_seconds,
        backoff_cap=settings.dispatch_backoff_cap_seconds,
        concurrency=settings.dispatch_concurrency,
        apply_timeout=settings.dispatch_apply_timeout_seconds,
        metrics=metrics,
        routing=load_configured(settings.routing),
        # Flap damping and the stateless TTL keep their timers in the SQLite inbox; on PostgreSQL they
        # do not run yet (docs/postgresql.md, "Lifecycle rules"), which the start log says.
        lifecycle=(
            None
            if is_postgres(settings.db)
            else Lifecycle(
                inbox,  # type: ignore[arg-type]
                reopen_window=settings.reopen_window,
                stateless_ttl=settings.stateless_ttl,
                flap_cycles=settings.flap_cycles,
                flap_quiet=settings.flap_quiet,
                sweep_interval=settings.lifecycle_sweep_seconds,
            )
        ),
    )
    inbox.set_on_committed(dispatcher.notify)
    metrics.bind_inbox(inbox)
    metrics.bind_auth(verifier, jwks)
    metrics.bind_dispatcher(dispatcher)
    runtime = Runtime(
        settings=settings,
        backend=backend,
        verifier=verifier,
        jwks=jwks,
        owns_jwks=owns_jwks,
        inbox=inbox,
        dispatcher=dispatcher,
        metrics=metrics,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await inbox.open()
                stack.push_async_callback(inbox.close)
                if owns_jwks or not jwks.loaded:
                    await jwks.start()
                    if owns_jwks:
                        stack.push_async_callback(jwks.close)
                stack.push_async_callback(backend.close)
                if dispatcher.lifecycle is not None:
                    await dispatcher.lifecycle.open()
                    stack.push_async_callback(dispatcher.lifecycle.close)
                else:
                    log.warning(
                        "lifecycle rules not run on PostgreSQL",
                        extra={
                            "event": "lifecycle_unsupported",
                            "flap_cycles": settings.flap_cycles,
                            "stateless_ttl": settings.stateless_ttl,
                            "detail": "flap damping and SECURE_EXPORT_STATELESS_TTL run with an SQLite inbox only (docs/postgresql.md)",
                        },
                    )
                from receiver.dispatch.ops_watch import OpsWatcher, prune_resolved_loop

                if is_postgres(settings.db):
                    from receiver.storage.postgres.shared import start_shared_dispatch

                    runtime.dispatch_lease = await start_shared_dispatch(inbox, dispatcher, settings, stack)
                else:
                    await dispatcher.start()
                    stack.push_async_callback(dispatcher.stop, settings.graceful_shutdown_seconds)
                    watcher = OpsWatcher(inbox, dispatcher, poll_seconds=settings.ops_poll_seconds)
                    await watcher.start()
                    stack.push_async_callback(watcher.stop)
                    runtime.ops_watcher = watcher
                from receiver.observability.activity import summary_loop

                summary = asyncio.create_task(summary_loop(runtime, settings.activity_log_seconds))
                stack.callback(summary.cancel)
                if settings.resolved_retention_days and hasattr(backend, "prune_resolved"):
                    pruner = asyncio.create_task(prune_resolved_loop(backend, settings.resolved_retention_days * 86400))
                    stack.callback(pruner.cancel)
            except Exception as error:
                runtime.startup_error = error
                # One line that says why; a traceback only for what nobody foresaw (a bug).
                log.error(
                    "receiver did not start",
                    exc_info=None if isinstance(error, InboxUnavailable | PermanentBackendError) else error,
                    extra={"event": "startup_failed", "error": str(error) or type(error).__name__},
                )
                raise
            runtime.started = True
            log.info(
                "receiver started",
                extra={
                    "event": "receiver_started",
                    "backend": backend.name,
                    "db": redact(settings.db),
                    "pending": inbox.depth(),
                    "parked": inbox.parked(),
                },
            )
            try:
                yield
            finally:
                runtime.shutting_down = True
                log.info("receiver stopping", extra={"event": "receiver_stopping", "pending": inbox.depth()})

    from receiver.http.operations import routes as ops_routes

    endpoint = AlertEndpoint(runtime)
    split = settings.ops_port is not None
    operations = [
        Route("/healthz", _healthz, methods=["GET", "HEAD"]),
        Route("/readyz", _make_readyz(runtime), methods=["GET", "HEAD"]),
        Route("/metrics", _make_metrics(runtime), methods=["GET"]),
        *ops_routes(runtime, loopback_only=not split),
    ]
    public = [
        Route("/api/alerts", endpoint, methods=["POST"]),
        Route("/healthz", _healthz, methods=["GET", "HEAD"]),
        Route("/readyz", _make_readyz(runtime, detailed=False), methods=["GET", "HEAD"]),
    ]
    app = ReceiverApp(
        alerts=endpoint.guarded,
        routes=public if split else [public[0], *operations],
        middleware=[Middleware(_Guard, runtime=runtime)],
        exception_handlers={HTTPException: _http_exception},
        lifespan=lifespan,
    )
    # With SECURE_EXPORT_OPS_PORT the operations live on an app of their own, served on that port
    # by the same process (receiver.http.server); it shares this runtime and has no lifespan.
    app.state.ops_app = (
        Starlette(
            routes=operations,
            middleware=[Middleware(_Guard, runtime=runtime)],
            exception_handlers={HTTPException: _http_exception},
        )
        if split
        else None
    )
    metrics.bind_requests(lambda: runtime.in_flight)
    # Hook for backends with metrics of their own (e.g. ITSM HTTP calls by table and status):
    # they register collectors on this app's registry, never on the global default one.
    bind_metrics = getattr(backend, "bind_metrics", None)
    if callable(bind_metrics):
        bind_metrics(metrics.registry)
    app.state.receiver = runtime
    return app
