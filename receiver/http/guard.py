"""The one place that owns "never answer 500": every answer counted and timed, any escaped exception a 503."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from receiver.http.responses import (
    RETRY_AFTER_SECONDS,
    Answer,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    error_response,
    response_start,
)
from receiver.http.state import ReceiverState
from receiver.observability.metrics import route_label

log = logging.getLogger(__name__)


async def answer_unhandled(scope: Scope, receive: Receive, send: Send, *, answered: bool) -> bool:
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


class ErrorGuard:
    """Outermost middleware: counts and times every answer; turns any escaped exception into 503."""

    def __init__(self, app: ASGIApp, state: ReceiverState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        state = self.state

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        state.in_flight += 1
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:  # noqa: BLE001 - the one place that guarantees "no 500"
            if await answer_unhandled(scope, receive, send, answered=status != 0):
                status = 503
        finally:
            state.in_flight -= 1
            state.metrics.answered(route_label(scope.get("path", "")), status, time.perf_counter() - started)

    @staticmethod
    def for_handler(
        handle: Callable[[Scope, Receive], Awaitable[Answer | None]], state: ReceiverState, path: str
    ) -> ASGIApp:
        """The same guard for a handler that returns its whole answer (``None``: the client went away).

        No wrapper around every ``send`` (the handler knows its own status): this is the hot path.
        """
        route = route_label(path)

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            started = time.perf_counter()
            state.in_flight += 1
            status = 0
            try:
                answer = await handle(scope, receive)
                if answer is None:
                    return
                answer_status, body, headers = answer
                await send(response_start(answer_status, body, headers))
                status = answer_status
                await send({"type": "http.response.body", "body": body})
            except Exception:  # noqa: BLE001 - the one place that guarantees "no 500" on this path
                if await answer_unhandled(scope, receive, send, answered=status != 0):
                    status = 503
            finally:
                state.in_flight -= 1
                state.metrics.answered(route, status, time.perf_counter() - started)

        return guarded
