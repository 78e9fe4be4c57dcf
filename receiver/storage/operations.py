"""Operators' actions on the inbox, whichever store holds it: trace an alert, replay or discard parked deliveries.

The SQLite and PostgreSQL implementations live beside their stores; these entry points pick one by
the database location and hold what both share (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from receiver.storage import is_postgres
from receiver.storage.records import OpsError, OpsResult

MAX_REASON = 2000
"""Characters of a discard reason that are kept."""


def trace(db: str, alert_id: str, *, details: bool = False) -> dict[str, Any]:
    """Every delivery of ``alert_id`` and the work items or incidents they became (docs/design.md shape)."""
    if is_postgres(db):
        from receiver.storage.postgres import operations as postgres

        return postgres.trace(db, alert_id)
    from receiver.storage.sqlite import operations as sqlite

    return sqlite.trace(db, alert_id, details=details)


def replay(db: str, ids: Iterable[int] | None, *, by: str | None = None) -> OpsResult:
    """Parked rows (``ids``, or all with ``None``) back to pending with a fresh attempt count."""
    if is_postgres(db):
        from receiver.storage.postgres import operations as postgres

        return postgres.replay(db, ids, by=by)
    from receiver.storage.sqlite import operations as sqlite

    return sqlite.replay(db, ids, by=by)


def discard(db: str, ids: Iterable[int], *, reason: str, by: str | None = None) -> OpsResult:
    """Parked rows marked ``discarded`` with who and why; kept until retention removes them."""
    reason = " ".join(reason.split())[:MAX_REASON]
    if not reason:
        raise OpsError("a reason is required to discard a delivery (--reason TEXT)")
    if is_postgres(db):
        from receiver.storage.postgres import operations as postgres

        return postgres.discard(db, ids, reason=reason, by=by)
    from receiver.storage.sqlite import operations as sqlite

    return sqlite.discard(db, ids, reason=reason, by=by)
