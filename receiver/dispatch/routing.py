"""Routing in the receiver: the file named by ``SECURE_EXPORT_ROUTING`` applied to each alert event.

The model and the matcher live in :mod:`secure_export.routing` (the Pulumi program validates
``secure-export:routing`` with the same model); this module only turns an :class:`AlertEvent`
into what a rule matches on and attaches the decision to the event.
"""

from __future__ import annotations

import dataclasses

from receiver.alerts.events import AlertEvent
from secure_export.routing import RoutingFile, RoutingSubject, load_routing

__all__ = ["EMPTY_ROUTING", "load_configured", "route_event"]

EMPTY_ROUTING = RoutingFile()
"""No file: every item goes to the default, which sets nothing."""


def load_configured(path: str | None) -> RoutingFile:
    """The routing file at ``path`` (``SECURE_EXPORT_ROUTING``), or no rules when unset.

    Raises :class:`secure_export.routing.RoutingError` listing every problem with its key path.
    """
    return load_routing(path) if path else EMPTY_ROUTING


def route_event(routing: RoutingFile, event: AlertEvent) -> AlertEvent:
    """``event`` with the first matching rule's decision attached (``event.route``)."""
    subject = RoutingSubject(
        severity=event.severity,
        monitoring_service=event.monitoring_service,
        signal_type=event.signal_type,
        alert_rule=event.rule,
        target_ids=event.target_ids,
        custom_properties=event.custom_properties,
        alert_id=event.alert_id,
    )
    return dataclasses.replace(event, route=routing.decide(subject))
