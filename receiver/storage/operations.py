"""Operators' actions on the inbox, whichever store holds it: trace an alert, replay or discard parked deliveries.

The SQLite and PostgreSQL implementations live beside their stores; these entry points pick one by
the database location and hold what both share (docs/operations.md).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from receiver.storage.location import PostgresDatabase, database_location

MAX_REASON = 2000
"""Characters of a discard reason that are kept."""


class OpsError(Exception):
    """An operation cannot be done as asked; the message says why and what to do."""


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


def trace(db: str, alert_id: str, *, details: bool = False) -> dict[str, Any]:
    """Every delivery of ``alert_id`` and the work items or incidents they became (DESIGN.md shape)."""
    if isinstance(database_location(db), PostgresDatabase):
        from receiver.storage.postgres import operations as postgres

        return postgres.trace(db, alert_id)
    from receiver.storage.sqlite import operations as sqlite

    return sqlite.trace(db, alert_id, details=details)


def replay(db: str, ids: Iterable[int] | None, *, by: str | None = None) -> OpsResult:
    """Parked rows (``ids``, or all with ``None``) back to pending with a fresh attempt count."""
    if isinstance(database_location(db), PostgresDatabase):
        from receiver.storage.postgres import operations as postgres

        return postgres.replay(db, ids, by=by)
    from receiver.storage.sqlite import operations as sqlite

    return sqlite.replay(db, ids, by=by)


def discard(db: str, ids: Iterable[int], *, reason: str, by: str | None = None) -> OpsResult:
    """Parked rows marked ``discarded`` with who and why; kept until retention removes them."""
    reason = " ".join(reason.split())[:MAX_REASON]
    if not reason:
        raise OpsError("a reason is required to discard a delivery (--reason TEXT)")
    if isinstance(database_location(db), PostgresDatabase):
        from receiver.storage.postgres import operations as postgres

        return postgres.discard(db, ids, reason=reason, by=by)
    from receiver.storage.sqlite import operations as sqlite

    return sqlite.discard(db, ids, reason=reason, by=by)
