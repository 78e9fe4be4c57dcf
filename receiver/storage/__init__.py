"""Where the receiver keeps accepted alerts: the store seam and the factory that picks a store.

``SECURE_EXPORT_DB`` is either a path (SQLite, :class:`receiver.storage.sqlite.inbox.Inbox`, the embedded
default for one replica) or a ``postgresql://`` libpq URL (:class:`receiver.storage.postgres.inbox.PostgresInbox`,
for several replicas). Both satisfy :class:`InboxStore`; the app, the dispatcher and the ops watcher
depend only on that protocol. :func:`is_postgres` (read in :mod:`receiver.storage.location`) says which
store a value names. docs/postgresql.md describes the PostgreSQL store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from receiver.storage.location import is_postgres
from receiver.storage.records import InboxRow, InboxUnavailable, PutResult, WorkItemRef

if TYPE_CHECKING:
    from receiver.alerts.schema import CommonAlert

__all__ = ["InboxRow", "InboxStore", "InboxUnavailable", "PutResult", "is_postgres", "open_store"]


@runtime_checkable
class InboxStore(Protocol):
    """The inbox operations the request path, the dispatcher and the ops watcher use."""

    commits: int
    rows_written: int
    write_failures: int
    lock_waits: int
    lock_wait_seconds: float
    pruned: int

    def set_on_committed(self, callback: Callable[[list[InboxRow]], None] | None) -> None: ...
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def put(
        self,
        alert_id: str,
        monitor_condition: str,
        body: bytes,
        *,
        alert: CommonAlert | None = None,
        timeout: float | None = None,
    ) -> PutResult: ...
    async def pending(self, after_id: int = 0, limit: int = 500) -> list[InboxRow]: ...
    async def replayed(self, up_to_id: int, limit: int = 5000) -> list[InboxRow]: ...
    async def mark_done(self, row_id: int, work_item: WorkItemRef | None = None) -> None: ...
    def mark_done_soon(self, row_id: int, work_item: WorkItemRef | None = None) -> Any: ...
    async def record_failure(self, row_id: int, attempts: int, error: str, next_attempt_at: float | None) -> None: ...
    async def park(self, row_id: int, attempts: int, error: str) -> None: ...
    async def prune(self, older_than_seconds: float, *, limit: int = 5000) -> int: ...
    async def prune_discarded(self, older_than_seconds: float, *, limit: int = 5000) -> int: ...
    async def recount(self) -> None: ...
    async def probe(self) -> None: ...
    def puts_waiting(self) -> int: ...
    def depth(self) -> int: ...
    def parked(self) -> int: ...


def open_store(
    db: str,
    *,
    busy_timeout: float = 1.0,
    retention_seconds: float | None = None,
    discarded_retention_seconds: float | None = None,
    db_auth: str = "password",
) -> InboxStore:
    """The inbox for ``SECURE_EXPORT_DB``: PostgreSQL for a ``postgresql://`` URL, else an SQLite file.

    Any other URL scheme is a ``ValueError`` (:func:`is_postgres`), never a SQLite file with a strange name.

    Nothing is opened here; the caller awaits ``open()``.
    """
    if is_postgres(db):
        from receiver.storage.postgres.inbox import PostgresInbox

        return PostgresInbox(
            db,
            auth=db_auth,
            busy_timeout=busy_timeout,
            retention_seconds=retention_seconds,
            discarded_retention_seconds=discarded_retention_seconds,
        )
    from receiver.storage.sqlite.inbox import Inbox

    return Inbox(
        db,
        busy_timeout=busy_timeout,
        retention_seconds=retention_seconds,
        discarded_retention_seconds=discarded_retention_seconds,
    )
