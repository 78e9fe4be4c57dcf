"""Where the lifecycle rules keep their state: the :class:`LifecycleStore` seam and the factory.

:mod:`receiver.dispatch.lifecycle` decides (flap cycles, timers); a store keeps the decisions in
the inbox's own database: :mod:`receiver.storage.sqlite.lifecycle` beside the SQLite inbox,
:mod:`receiver.storage.postgres.lifecycle` in PostgreSQL (schema version 4). docs/postgresql.md,
"Lifecycle rules", says which replica runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from receiver.storage import InboxStore

__all__ = ["Delivery", "LifecycleStore", "StoredResolution", "Timer", "TimerReason", "open_lifecycle_store"]

TimerReason = Literal["stateless-ttl", "flap-quiet"]


@dataclass(frozen=True, slots=True)
class Timer:
    """One lifecycle timer: resolve the item of ``correlation_key`` at ``due_at`` (epoch seconds)."""

    correlation_key: str
    reason: TimerReason
    due_at: float
    after_seconds: float
    essentials: str
    """The essentials of the event that set it (JSON): the template of the Resolved it becomes."""


Delivery = tuple[str, bytes]
"""``(alert_id, body)`` of a Resolved the receiver stores itself (``monitorCondition`` Resolved)."""


@dataclass(frozen=True, slots=True)
class StoredResolution:
    """A due timer turned into an inbox row; ``inserted`` is False when that row existed already."""

    timer: Timer
    alert_id: str
    inserted: bool


class LifecycleStore(Protocol):
    """The lifecycle rules' tables; every method is one transaction and may be repeated (replays)."""

    async def open(self) -> None:
        """Make sure the tables exist (SQLite creates them; PostgreSQL's migrations did)."""
        ...

    async def cycles(self, lifecycle_key: str, alert_id: str, since: float) -> int:
        """Fire/resolve cycles since ``since`` that a Resolved of ``alert_id`` would complete; 0 while others fire."""
        ...

    async def ended(self, lifecycle_key: str) -> None:
        """The item resolved as a whole: nothing of this rule fires any more."""
        ...

    async def resolved(self, lifecycle_key: str, alert_id: str, now: float, hold: Timer | None) -> None:
        """Azure resolved ``alert_id``; ``hold`` is the flap-quiet timer when the Resolved was held."""
        ...

    async def fired(self, correlation_key: str, lifecycle_key: str, alert_id: str, now: float, window: float) -> None:
        """A Fired of a stateful alert: cancels a flap-quiet timer, counts a cycle when the rule had cleared."""
        ...

    async def fired_stateless(self, correlation_key: str, ttl: Timer | None) -> None:
        """A Fired of an alert Azure never resolves: cancels a flap-quiet timer, sets or restarts the TTL."""
        ...

    async def take_due(
        self, now: float, limit: int, to_delivery: Callable[[Timer], Delivery]
    ) -> list[StoredResolution]:
        """Due timers become inbox rows, each in the same transaction as its timer's deletion."""
        ...

    async def forget_firing_before(self, before: float) -> None:
        """Forget instances marked firing since before ``before`` (their Resolved was lost)."""
        ...

    async def timers(self) -> list[Timer]:
        """Every timer, soonest first."""
        ...


def open_lifecycle_store(inbox: InboxStore) -> LifecycleStore:
    """The lifecycle store in ``inbox``'s database (nothing opened yet: await ``open()``)."""
    from receiver.storage.postgres.inbox import PostgresInbox
    from receiver.storage.sqlite.inbox import Inbox

    if isinstance(inbox, PostgresInbox):
        from receiver.storage.postgres.lifecycle import PostgresLifecycleStore

        return PostgresLifecycleStore(inbox)
    if isinstance(inbox, Inbox):
        from receiver.storage.sqlite.lifecycle import SqliteLifecycleStore

        return SqliteLifecycleStore(inbox)
    raise TypeError(f"no lifecycle store for an inbox of type {type(inbox).__name__}")
