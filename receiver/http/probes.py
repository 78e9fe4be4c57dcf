"""``/healthz``, ``/readyz`` (why not ready) and ``/metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from receiver.http.responses import error_response, json_response
from receiver.http.state import ReceiverState
from receiver.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from receiver.storage.records import InboxUnavailable

READINESS_TIMEOUT_SECONDS = 3.0


def readyz_endpoint(state: ReceiverState, *, detailed: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """``/readyz``: the reasons in the body, or (``detailed=False``, the public port when an ops port
    is set) only the status, so the internet learns nothing about the backend or the keys."""

    async def readyz(request: Request) -> Response:
        problems: list[str] = []
        warnings: list[str] = []
        if state.shutting_down:
            problems.append("shutting down")
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                await state.inbox.probe()
        except (InboxUnavailable, TimeoutError) as error:
            problems.append(f"inbox not writable: {error or 'timed out'}")
        if not state.jwks.loaded:
            reason = getattr(state.jwks, "last_error", None)
            problems.append("signing keys not loaded" + (f": {reason}" if reason else ""))
        if state.dispatcher.backend_error:
            problems.append(state.dispatcher.backend_error)
        else:
            try:
                async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                    readiness = await state.backend.readiness()
                if not readiness.ready:
                    problems.append(f"backend {state.backend.name} not ready: {readiness.reason or 'no reason given'}")
                elif readiness.reason:
                    warnings.append(f"backend {state.backend.name}: {readiness.reason}")
            except TimeoutError:
                problems.append(f"backend {state.backend.name} readiness check timed out")
        if problems:
            if not detailed:
                return error_response(503, "not_ready", "not ready; the reasons are on the ops port")
            return error_response(503, "not_ready", "; ".join(problems))
        if warnings and detailed:
            # Ready, but something needs a person (e.g. a routing name ServiceNow does not know).
            return json_response(200, {"status": "ready", "warnings": warnings})
        return json_response(200, {"status": "ready"})

    return readyz


async def healthz(request: Request) -> Response:
    return json_response(200, {"status": "ok"})


def metrics_endpoint(state: ReceiverState) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        return Response(state.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return metrics
