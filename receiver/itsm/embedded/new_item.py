"""The row of a new work item, the same on both stores: state, priority, text and routed fields."""

from __future__ import annotations

from collections.abc import Mapping

from receiver.alerts.events import AlertEvent
from receiver.itsm.embedded import render
from receiver.itsm.embedded.priority import priority_for, routed_values

__all__ = ["NEW_ITEM_COLUMNS", "new_item_values"]

NEW_ITEM_COLUMNS = (
    "correlation_key",
    "state",
    "severity",
    "priority",
    "title",
    "description",
    "opened_at",
    "resolved_at",
    "occurrences",
    "assignment_group",
    "category",
    "subcategory",
    "impact",
    "urgency",
)
"""The ``work_items`` columns :func:`new_item_values` fills, in its order."""


def new_item_values(
    event: AlertEvent, *, opened_at: str, resolved_first_at: str | None, priority_map: Mapping[str, int]
) -> tuple[str | int | None, ...]:
    """Values for :data:`NEW_ITEM_COLUMNS` of the item ``event`` opens.

    ``resolved_first_at``: when the alert's Resolved was applied before this Fired, the item is
    created already ``Resolved`` at that time.
    """
    routed = routed_values(event)
    return (
        event.correlation_key,
        "Resolved" if resolved_first_at else "New",
        event.severity,
        priority_for(event, priority_map),
        render.title(event),
        render.description(event),
        opened_at,
        resolved_first_at or None,
        1,
        routed["assignment_group"],
        routed["category"],
        routed["subcategory"],
        routed["impact"],
        routed["urgency"],
    )
