"""The embedded backend's lifecycle decisions, the same on both stores: reopen window, flap hold, closed items.

Only decisions and notes live here; the statements that read and change items are the store's
(:mod:`receiver.itsm.embedded.lifecycle` on SQLite, :mod:`receiver.itsm.embedded.lifecycle_postgres`).
docs/work-items.md describes the rules for operators.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol

from receiver.itsm.embedded import render

__all__ = [
    "PREVIOUS_ITEM_COLUMNS",
    "ItemRow",
    "KeyColumn",
    "held_open",
    "not_reopened_note",
    "reopen_gap",
    "seconds_between",
]

KeyColumn = Literal["correlation_key", "lifecycle_key"]
"""The ``work_items`` columns an item is found by: its correlation key, or its rule and targets."""

PREVIOUS_ITEM_COLUMNS = "id, number, state, resolved_at, resolved_by"
"""The ``work_items`` columns the decisions read from the previous item of a rule and targets."""


class ItemRow(Protocol):
    """A row of :data:`PREVIOUS_ITEM_COLUMNS` (``sqlite3.Row`` or an asyncpg ``Record``)."""

    def __getitem__(self, key: str, /) -> Any: ...


def seconds_between(earlier: str, later: str) -> float:
    """Seconds from ``earlier`` to ``later`` (ISO 8601 times as the stores keep them; may be negative)."""
    return (
        datetime.fromisoformat(later.replace("Z", "+00:00")) - datetime.fromisoformat(earlier.replace("Z", "+00:00"))
    ).total_seconds()


def reopen_gap(previous: ItemRow | None, fired_at: str, window: float) -> float | None:
    """Seconds between ``previous``'s resolution and ``fired_at`` when a Fired then may reopen it, else ``None``.

    Reopenable: Resolved (by Azure, the receiver or a person; never Closed) at most ``window``
    seconds before ``fired_at``, as ServiceNow lets a Resolved incident be reopened and a Closed
    one not. A resolution after ``fired_at`` (a person resolved it since) counts as within. The
    store checks besides that no other item of the rule and targets is open.
    """
    if previous is None or previous["state"] != "Resolved" or window <= 0 or not previous["resolved_at"]:
        return None
    try:
        gap = seconds_between(previous["resolved_at"], fired_at)
    except ValueError:
        return None
    return max(0.0, gap) if gap <= window else None


def held_open(previous: ItemRow | None, firing: int) -> bool:
    """Whether ``previous`` is open only because flap damping held it: ``New`` with no alert of it ``firing``."""
    return previous is not None and previous["state"] == "New" and firing == 0


def not_reopened_note(previous: ItemRow | None) -> str | None:
    """For a new item: why the previous item of the same rule and targets was not reopened, if a person ended it."""
    if previous is None or previous["state"] != "Closed":
        return None
    return render.follows_closed_note(str(previous["number"]))
