"""A new work item's priority and routed fields: from its route's impact and urgency, else its severity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

from receiver.alerts.events import AlertEvent

__all__ = [
    "DEFAULT_PRIORITY_MAP",
    "MISSING_SEVERITY_KEY",
    "PRIORITY_MATRIX",
    "ROUTED_FIELDS",
    "SEVERITY_LEVELS",
    "RoutedValues",
    "priority_for",
    "routed_values",
    "validated_priority_map",
]

MISSING_SEVERITY_KEY = "default"
"""Priority-map key used for an alert without severity (cost alerts) or with an unknown one."""

DEFAULT_PRIORITY_MAP: Mapping[str, int] = {
    "Sev0": 1,
    "Sev1": 2,
    "Sev2": 3,
    "Sev3": 4,
    "Sev4": 5,
    MISSING_SEVERITY_KEY: 3,
}
"""Azure severity → work item priority (1 Critical … 5 Planning). No severity → 3 (Moderate)."""

PRIORITY_MATRIX: Mapping[tuple[int, int], int] = {
    (1, 1): 1,
    (1, 2): 2,
    (2, 1): 2,
    (1, 3): 3,
    (2, 2): 3,
    (3, 1): 3,
    (2, 3): 4,
    (3, 2): 4,
    (3, 3): 5,
}
"""ServiceNow's default priority lookup: (impact, urgency) → priority."""

SEVERITY_LEVELS: Mapping[str, tuple[int, int]] = {
    "Sev0": (1, 1),
    "Sev1": (1, 2),
    "Sev2": (2, 2),
    "Sev3": (2, 3),
    "Sev4": (3, 3),
}
"""Impact and urgency of a severity, completing a route that sets only one of the two."""

ROUTED_FIELDS = ("assignment_group", "category", "subcategory", "impact", "urgency")
"""The work item fields a route of the routing file sets."""


class RoutedValues(TypedDict):
    """The routed fields of a new work item (``None`` where no route sets them)."""

    assignment_group: str | None
    category: str | None
    subcategory: str | None
    impact: int | None
    urgency: int | None


def validated_priority_map(priority_map: Mapping[str, int]) -> dict[str, int]:
    """``priority_map`` merged over :data:`DEFAULT_PRIORITY_MAP`; a ``ValueError`` names a bad key or value."""
    merged = dict(DEFAULT_PRIORITY_MAP)
    for key, value in priority_map.items():
        if key not in DEFAULT_PRIORITY_MAP:
            raise ValueError(f"priority map key {key!r} is unknown; use Sev0..Sev4 or {MISSING_SEVERITY_KEY!r}")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise ValueError(f"priority for {key!r} must be an integer 1..5, got {value!r}")
        merged[key] = value
    return merged


def routed_values(event: AlertEvent) -> RoutedValues:
    """The routed fields of a new item for ``event``."""
    route = event.route
    if route is None:
        return RoutedValues(assignment_group=None, category=None, subcategory=None, impact=None, urgency=None)
    return RoutedValues(
        assignment_group=route.assignment_group,
        category=route.category,
        subcategory=route.subcategory,
        impact=route.impact,
        urgency=route.urgency,
    )


def priority_for(event: AlertEvent, priority_map: Mapping[str, int]) -> int:
    """A route's impact/urgency through the priority matrix; else ``priority_map`` by severity.

    ``priority_map`` is a :func:`validated_priority_map` (it has :data:`MISSING_SEVERITY_KEY`).
    """
    route = event.route
    if route is None or (route.impact is None and route.urgency is None):
        return priority_map.get(event.severity or "", priority_map[MISSING_SEVERITY_KEY])
    impact, urgency = SEVERITY_LEVELS.get(event.severity or "", (2, 2))
    return PRIORITY_MATRIX[(route.impact or impact, route.urgency or urgency)]
