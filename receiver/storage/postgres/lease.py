"""The dispatch lease: one replica at a time applies rows, through a session advisory lock.

Hand-over after a crash and the keepalive settings: docs/postgresql.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from receiver.storage.postgres.connect import Database, connection_errors

log = logging.getLogger(__name__)

DISPATCH_LOCK = 0x5EC0_0003
"""Session advisory lock key of the dispatch lease."""
KEEPALIVE_SETTINGS = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}
"""Server-side keepalives of the lease session: a vanished holder is noticed within ~25 s."""


class DispatchLease:
    """Runs ``dispatcher`` on this replica while it holds the dispatch lease."""

    def __init__(self, database: Database, dispatcher: Any, *, check_seconds: float = 2.0, grace: float = 10.0) -> None:
        self.database = database
        self.dispatcher = dispatcher
        self.check_seconds = check_seconds
        self.grace = grace
        self.holding = False
        self.status = "starting"
        """``dispatching``, ``standby: ...`` or why the lease cannot be taken (shown by /readyz)."""
        self.acquired = 0
        """How many times this replica took the lease."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start competing for the lease in the background."""
        self._task = asyncio.create_task(self._run(), name="dispatch-lease")

    async def stop(self) -> None:
        """Stop dispatching (in-flight calls get ``grace``) and release the lease."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            conn: Any = None
            lost = asyncio.Event()
            try:
                conn = await self.database.connect(timeout=self.check_seconds * 5)
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                for name, value in KEEPALIVE_SETTINGS.items():
                    await conn.execute(f"SET {name} = {value}")
                while not await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)", DISPATCH_LOCK, timeout=self.check_seconds
                ):
                    self.status = "standby: another replica holds the dispatch lease"
                    await asyncio.sleep(self.check_seconds)
                self.holding = True
                self.acquired += 1
                self.status = "dispatching"
                log.info("dispatch lease taken; dispatching", extra={"event": "dispatch_lease_taken"})
                await self.dispatcher.start()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.check_seconds):
                            await lost.wait()
                    await conn.fetchval("SELECT 1", timeout=self.check_seconds)
                raise ConnectionError("the dispatch lease connection closed")
            except asyncio.CancelledError:
                await self._let_go(conn, "shutting down")
                raise
            except connection_errors() as error:
                reason = f"database unreachable for the dispatch lease: {error or type(error).__name__}"
                await self._let_go(conn, reason)
            await asyncio.sleep(self.check_seconds)

    async def _let_go(self, conn: Any, reason: str) -> None:
        if self.holding:
            log.warning(
                "dispatch lease lost; dispatching stopped", extra={"event": "dispatch_lease_lost", "reason": reason}
            )
            self.holding = False
            await self.dispatcher.stop(self.grace)
        self.status = reason
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()  # ends the session: the server frees the lock now
