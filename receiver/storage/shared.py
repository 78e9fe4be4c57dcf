"""Starting shared dispatch for a receiver on PostgreSQL (called by the app's lifespan)."""

from __future__ import annotations

import contextlib
from typing import Any

from receiver.storage.pg_dispatch import DispatchLease


async def start_shared_dispatch(
    inbox: Any, dispatcher: Any, settings: Any, stack: contextlib.AsyncExitStack
) -> DispatchLease:
    """Wake the dispatcher on other replicas' commits and run it while this replica holds the lease."""
    inbox.set_on_remote_commit(dispatcher.notify)
    lease = DispatchLease(inbox.database, dispatcher, grace=settings.graceful_shutdown_seconds)
    await lease.start()
    stack.push_async_callback(lease.stop)
    return lease
