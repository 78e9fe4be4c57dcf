"""Notice operators' replays and discards made beside the running receiver, and prune old work items."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from typing import Protocol, runtime_checkable

from receiver.dispatch.dispatcher import Dispatcher
from receiver.storage.sqlite.inbox import Inbox
from receiver.storage.sqlite.operations import ops_generation

log = logging.getLogger(__name__)


class OpsWatcher:
    """Polls ``ops_generation`` and applies what changed to the running inbox and dispatcher."""

    def __init__(self, inbox: Inbox, dispatcher: Dispatcher, *, poll_seconds: float = 2.0) -> None:
        self.inbox = inbox
        self.dispatcher = dispatcher
        self.poll_seconds = poll_seconds
        self._seen: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        self._conn: sqlite3.Connection | None = None
        self.replayed = 0
        """Rows handed to the dispatcher after an operator's replay."""

    async def start(self) -> None:
        """Remember the current generation and start polling."""
        self._seen = await asyncio.to_thread(self._read)
        self._task = asyncio.create_task(self._run(), name="ops-watcher")

    async def stop(self) -> None:
        """Stop polling and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def poke(self) -> None:
        """Check now (an ops endpoint just changed rows)."""
        self._poke.set()

    def _read(self) -> int:
        if self._conn is None:
            self._conn = sqlite3.connect(self.inbox.db_path, isolation_level=None, check_same_thread=False, timeout=5)
        return ops_generation(self._conn)

    async def check(self) -> int:
        """Apply a changed generation now; returns how many replayed rows were handed over."""
        generation = await asyncio.to_thread(self._read)
        if generation == self._seen:
            return 0
        self._seen = generation
        await self.inbox.recount()
        rows = await self.inbox.replayed(self.dispatcher.loaded_up_to)
        taken = self.dispatcher.take_replayed(rows)
        self.replayed += taken
        log.info(
            "operator change noticed",
            extra={
                "event": "ops_change_noticed",
                "generation": generation,
                "replayed_rows": taken,
                "pending": self.inbox.depth(),
                "parked": self.inbox.parked(),
            },
        )
        return taken

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._poke.wait()
            self._poke.clear()
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - housekeeping: try again at the next poll
                log.warning(
                    "checking for operator changes failed", extra={"event": "ops_watch_failed", "error": str(error)}
                )


@runtime_checkable
class PrunesResolved(Protocol):
    """A backend that keeps work items itself and can delete those resolved long ago (the embedded one)."""

    async def prune_resolved(self, older_than_seconds: float) -> int: ...


async def prune_resolved_loop(backend: PrunesResolved, older_than_seconds: float, *, interval: float = 3600.0) -> None:
    """Every ``interval`` seconds, delete the embedded backend's work items resolved before the retention period."""
    prune = backend.prune_resolved
    while True:
        try:
            while await prune(older_than_seconds) > 0:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - housekeeping: try again later
            log.warning(
                "pruning resolved work items failed", extra={"event": "prune_resolved_failed", "error": str(error)}
            )
        await asyncio.sleep(interval)
