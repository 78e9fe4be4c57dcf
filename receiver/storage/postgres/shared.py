"""Starting shared dispatch for a receiver on PostgreSQL (called by the app's lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from receiver.storage.postgres.lease import DispatchLease

log = logging.getLogger(__name__)


async def start_shared_dispatch(
    inbox: Any, dispatcher: Any, settings: Any, stack: contextlib.AsyncExitStack
) -> DispatchLease:
    """Wake the dispatcher on other replicas' commits and run it while this replica holds the lease."""
    tasks: set[asyncio.Task[None]] = set()

    async def take_replayed() -> None:
        try:
            await inbox.recount()
            taken = dispatcher.take_replayed(await inbox.replayed(dispatcher.loaded_up_to))
            log.info("operator change noticed", extra={"event": "ops_change_noticed", "replayed_rows": taken})
        except Exception as error:  # noqa: BLE001 - the next lease holder reads them anyway
            log.warning("taking replayed rows failed", extra={"event": "ops_watch_failed", "error": str(error)})

    def remote(payload: str) -> None:
        if payload.startswith("ops:"):
            task = asyncio.get_running_loop().create_task(take_replayed())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        dispatcher.notify(None)

    # Only wake-ups, never rows in memory: another replica's commit may hold lower ids than
    # this one's, and the dispatcher would move past them. Its loader reads "after row N" from
    # the database, where ids are committed in order (receiver.storage.postgres.inbox.INSERT_LOCK).
    inbox.set_on_committed(lambda _rows: dispatcher.notify(None))
    inbox.set_on_remote_commit(remote)
    await dispatcher.start_backend()  # a standby answers /readyz about its backend too
    lease = DispatchLease(inbox.database, dispatcher, grace=settings.graceful_shutdown_seconds)
    await lease.start()
    stack.push_async_callback(lease.stop)
    return lease
