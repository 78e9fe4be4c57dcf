"""Routing fields, in BMC's terms: where an incident goes and how it is categorised.

The routing file's ``set`` keys (docs/design.md, routing) map onto the incident forms' fields
below. The static route from ``SECURE_EXPORT_BMC_ASSIGNED_*`` and ``_CATEGORIZATION_TIER_*`` is
the base; the routing file's decision for the alert (``event.route``) is laid over it key by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from receiver.itsm.bmc_helix.settings import IMPACTS, URGENCIES, BmcSettings

if TYPE_CHECKING:
    from secure_export.routing import RouteDecision

ROUTING_FIELDS: dict[str, str] = {
    "assignedSupportCompany": "Assigned Support Company",
    "assignedSupportOrganization": "Assigned Support Organization",
    "assignmentGroup": "Assigned Group",
    "category": "Categorization Tier 1",
    "subcategory": "Categorization Tier 2",
}
"""Routing ``set`` key → field of ``HPD:IncidentInterface_Create``."""
LEVEL_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "impact": ("Impact", IMPACTS),
    "urgency": ("Urgency", URGENCIES),
}
"""``impact``/``urgency`` 1..4 → BMC's selection values (``1-Extensive/Widespread``, ``1-Critical``, …)."""


def static_route(settings: BmcSettings) -> dict[str, Any]:
    """The route every incident gets today: the configured support company, organization, group, tiers."""
    route = {
        "assignedSupportCompany": settings.assigned_support_company,
        "assignedSupportOrganization": settings.assigned_support_organization,
        "assignmentGroup": settings.assigned_group,
        "category": settings.categorization_tier_1,
        "subcategory": settings.categorization_tier_2,
    }
    return {key: value for key, value in route.items() if value}


def routed(settings: BmcSettings, route: RouteDecision | None) -> dict[str, Any]:
    """The static route with the alert's routing decision laid over it (what the decision sets wins)."""
    merged = static_route(settings)
    if route is None:
        return merged
    for key, value in (
        ("assignmentGroup", route.assignment_group),
        ("category", route.category),
        ("subcategory", route.subcategory),
        ("impact", route.impact),
        ("urgency", route.urgency),
    ):
        if value is not None:
            merged[key] = value
    return merged


def incident_fields(route: Mapping[str, Any]) -> dict[str, str]:
    """The incident fields a route sets; keys BMC has no field for are left out."""
    fields = {ROUTING_FIELDS[key]: str(value) for key, value in route.items() if key in ROUTING_FIELDS and value}
    for key, (name, choices) in LEVEL_FIELDS.items():
        level = route.get(key)
        if isinstance(level, int) and 1 <= level <= len(choices):
            fields[name] = choices[level - 1]
    return fields
