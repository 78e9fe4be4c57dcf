"""Starting shared dispatch for a receiver on PostgreSQL (called by the app's lifespan)."""

from __future__ import annotations

import contextlib
from typing import Any

from receiver.storage.pg_dispatch import DispatchLease


async def start_shared_dispatch(
    inbox: Any, dispatcher: Any, settings: Any, stack: contextlib.AsyncExitStack
) -> DispatchLease:
    """Wake the dispatcher on other replicas' commits and run it while this replica holds the lease."""
    # Only wake-ups, never rows in memory: another replica's commit may hold lower ids than
    # this one's, and the dispatcher would move past them. Its loader reads "after row N" from
    # the database, where ids are committed in order (receiver.storage.postgres.INSERT_LOCK).
    inbox.set_on_committed(lambda _rows: dispatcher.notify(None))
    inbox.set_on_remote_commit(dispatcher.notify)
    await dispatcher.start_backend()  # a standby answers /readyz about its backend too
    lease = DispatchLease(inbox.database, dispatcher, grace=settings.graceful_shutdown_seconds)
    await lease.start()
    stack.push_async_callback(lease.stop)
    return lease
