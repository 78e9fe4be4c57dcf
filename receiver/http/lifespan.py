"""The app's start and stop: inbox, keys, backend, lifecycle timers, dispatch and the background loops, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette

from receiver.dispatch.ops_watch import OpsWatcher, PrunesResolved, prune_resolved_loop
from receiver.http.state import ReceiverState
from receiver.itsm.base import PermanentBackendError
from receiver.observability.activity import summary_loop
from receiver.storage.postgres.connect import redact
from receiver.storage.records import InboxUnavailable
from receiver.storage.sqlite.inbox import Inbox

log = logging.getLogger(__name__)


def receiver_lifespan(state: ReceiverState) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The lifespan of an app over ``state``: start everything, yield while serving, stop in reverse."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings, inbox, jwks, backend, dispatcher = (
            state.settings,
            state.inbox,
            state.jwks,
            state.backend,
            state.dispatcher,
        )
        owns_jwks = state.owns_jwks
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

                if not isinstance(inbox, Inbox):
                    from receiver.storage.postgres.shared import start_shared_dispatch

                    state.dispatch_lease = await start_shared_dispatch(inbox, dispatcher, settings, stack)
                else:
                    await dispatcher.start()
                    stack.push_async_callback(dispatcher.stop, settings.graceful_shutdown_seconds)
                    watcher = OpsWatcher(inbox, dispatcher, poll_seconds=settings.ops_poll_seconds)
                    await watcher.start()
                    stack.push_async_callback(watcher.stop)
                    state.ops_watcher = watcher

                summary = asyncio.create_task(
                    summary_loop(state.metrics.registry, dispatcher, inbox, settings.activity_log_seconds)
                )
                stack.callback(summary.cancel)
                if settings.resolved_retention_days and isinstance(backend, PrunesResolved):
                    pruner = asyncio.create_task(prune_resolved_loop(backend, settings.resolved_retention_days * 86400))
                    stack.callback(pruner.cancel)
            except Exception as error:
                state.startup_error = error
                # One line that says why; a traceback only for what nobody foresaw (a bug).
                log.error(
                    "receiver did not start",
                    exc_info=None if isinstance(error, InboxUnavailable | PermanentBackendError) else error,
                    extra={"event": "startup_failed", "error": str(error) or type(error).__name__},
                )
                raise
            state.started = True
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
                state.shutting_down = True
                log.info("receiver stopping", extra={"event": "receiver_stopping", "pending": inbox.depth()})

    return lifespan
