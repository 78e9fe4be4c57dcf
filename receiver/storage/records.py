"""The values every store hands out: rows, put results, operators' results, and the failures callers map to answers."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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
class WorkItemRef:
    """What a delivery became in the ITSM tool: its work item or incident number, and a link to it."""

    number: str
    url: str | None = None


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


class OpsError(Exception):
    """An operation cannot be done as asked; the message says why and what to do."""


class DatabaseUnavailable(OpsError):
    """The database server cannot be reached or refused the work; the same request may succeed when it is back."""


class DatabaseMissing(OpsError):
    """The database file does not exist (an operation never creates one)."""


class NotOurDatabase(OpsError):
    """The file is an SQLite database, but not one this product wrote."""


@dataclass(frozen=True, slots=True)
class OpsResult:
    """What a replay or discard changed, and which asked-for ids it could not change (with why)."""

    changed: list[int]
    skipped: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON answer of the ops endpoints and of ``--json``."""
        return {"changed": self.changed, "skipped": [{"id": k, "reason": v} for k, v in self.skipped.items()]}


def operator() -> str:
    """Who is acting: the OS user (``--by`` overrides it on the command line)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in a container: fall back to the uid
        return f"uid {os.getuid()}"
