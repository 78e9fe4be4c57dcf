"""The receiver's ASGI application: routes, middleware and lifespan wired together (``create_app``).

Why Starlette, and the order of checks on ``POST /api/alerts``: docs/internals.md.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from receiver.auth.jwks import JwksCache
from receiver.auth.tokens import AuthPolicy, TokenVerifier
from receiver.dispatch.dispatcher import Dispatcher
from receiver.dispatch.lifecycle import Lifecycle
from receiver.dispatch.routing import load_configured
from receiver.http.alerts import AlertEndpoint
from receiver.http.guard import ErrorGuard
from receiver.http.lifespan import receiver_lifespan
from receiver.http.probes import healthz, metrics_endpoint, readyz_endpoint
from receiver.http.responses import ASGIApp, Message, Receive, Scope, Send, http_exception
from receiver.http.state import ReceiverState
from receiver.itsm.base import Backend, BackendCounters
from receiver.observability.metrics import ReceiverMetrics
from receiver.settings import ReceiverSettings
from secure_export.contract import ALERTS_PATH

log = logging.getLogger(__name__)


class ReceiverApp(Starlette):
    """Starlette, with ``POST /api/alerts`` handed straight to its guarded endpoint.

    The hot path skips the generic error, exception and routing layers (and their wrappers
    around every ``send``); it keeps what they would give it: :class:`ErrorGuard` counts the answer and
    turns any exception into a 503. Every other request goes through Starlette as usual (the
    route is registered there too, so ``GET /api/alerts`` gets its 405).
    """

    def __init__(self, *, alerts: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._alerts = alerts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == ALERTS_PATH and scope["method"] == "POST":
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

    ``backend`` defaults to :func:`receiver.http.backends.create_backend`; ``verifier`` to one built from
    the settings with its own :class:`JwksCache`, which the app starts and closes. An injected
    verifier's key cache (``verifier.keys``) is started if it has no keys yet and left open at
    shutdown (its owner closes it). The lifespan opens the inbox, starts the backend, the keys
    and the dispatcher; at shutdown (after uvicorn finished the requests in flight) it stops the
    dispatcher, drains the inbox writer, and closes the backend and the keys.
    """
    if backend is None:
        from receiver.http.backends import create_backend

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
    from receiver.storage import open_store
    from receiver.storage.lifecycle import open_lifecycle_store

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
        # Flap damping and the stateless TTL keep their state in the inbox's database, either store.
        lifecycle=Lifecycle(
            open_lifecycle_store(inbox),
            reopen_window=settings.reopen_window,
            stateless_ttl=settings.stateless_ttl,
            flap_cycles=settings.flap_cycles,
            flap_quiet=settings.flap_quiet,
            sweep_interval=settings.lifecycle_sweep_seconds,
        ),
    )
    inbox.set_on_committed(dispatcher.notify)
    metrics.bind_inbox(inbox)
    metrics.bind_auth(verifier, jwks)
    metrics.bind_dispatcher(dispatcher)
    state = ReceiverState(
        settings=settings,
        backend=backend,
        verifier=verifier,
        jwks=jwks,
        owns_jwks=owns_jwks,
        inbox=inbox,
        dispatcher=dispatcher,
        metrics=metrics,
    )

    from receiver.http.operations import routes as ops_routes

    endpoint = AlertEndpoint(state)
    split = settings.ops_port is not None
    operations = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz_endpoint(state), methods=["GET", "HEAD"]),
        Route("/metrics", metrics_endpoint(state), methods=["GET"]),
        *ops_routes(state, loopback_only=not split),
    ]
    public = [
        Route(ALERTS_PATH, endpoint, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz_endpoint(state, detailed=False), methods=["GET", "HEAD"]),
    ]
    app = ReceiverApp(
        alerts=ErrorGuard.for_handler(endpoint.handle, state, ALERTS_PATH),
        routes=public if split else [public[0], *operations],
        middleware=[Middleware(ErrorGuard, state=state)],
        exception_handlers={HTTPException: http_exception},
        lifespan=receiver_lifespan(state),
    )
    # With SECURE_EXPORT_OPS_PORT the operations live on an app of their own, served on that port
    # by the same process (receiver.http.server); it shares this state and has no lifespan.
    app.state.ops_app = (
        Starlette(
            routes=operations,
            middleware=[Middleware(ErrorGuard, state=state)],
            exception_handlers={HTTPException: http_exception},
        )
        if split
        else None
    )
    metrics.bind_requests(lambda: state.in_flight)
    # A backend with metrics of its own (ServiceNow, BMC Helix) publishes them on this app's registry,
    # never on the global default one, through the typed BackendCounters interface.
    if isinstance(backend, BackendCounters):
        from receiver.itsm.counters import register_counters

        register_counters(metrics.registry, backend)
    app.state.receiver = state
    return app
