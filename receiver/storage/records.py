"""The values every inbox store hands out: rows, put results and the failures the HTTP layer maps to 503."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from receiver.alerts.schema import CommonAlert


class InboxUnavailable(Exception):
    """The inbox could not store the row (disk full, read-only, locked): answer 503, Azure retries."""


class InboxOpenError(InboxUnavailable):
    """The database could not be opened at start: a configuration problem (``serve`` exits 2)."""


@dataclass(frozen=True, slots=True)
class PutResult:
    """Outcome of :meth:`Inbox.put`."""

    row_id: int | None
    duplicate: bool


@dataclass(frozen=True, slots=True)
class InboxRow:
    """A pending row as the dispatcher sees it."""

    id: int
    alert_id: str
    monitor_condition: str
    body: bytes
    received_at: str
    attempts: int
    next_attempt_at: float | None
    alert: CommonAlert | None = None
    """For rows handed over in memory: the alert the request already parsed (spares a second parse)."""


def iso_at(timestamp: float) -> str:
    """``timestamp`` (seconds since the epoch) as ISO-8601 UTC to the millisecond, with a ``Z``."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
