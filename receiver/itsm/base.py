"""The contract between the dispatcher and an ITSM backend.

The dispatcher turns each inbox row into one :class:`AlertEvent` and calls
:meth:`Backend.apply`. A row leaves the inbox only after ``apply`` returned, so a crash between
the two replays the event: every backend must make ``apply`` idempotent for the same
``(alert_id, condition)`` — a replay changes nothing.

Failures are classified by the exception a backend raises:

* :class:`TransientBackendError` — the dispatcher retries with exponential backoff and jitter
  (honouring ``retry_after`` when the ITSM tool sent one), until its attempt limit parks the row.
* :class:`PermanentBackendError` — retrying cannot help (a 400 or 403, a refused field): the row
  is parked as failed at once, with ``str(error)`` as the reason shown to operators.

Any other exception is treated as transient: a bug must not drop an alert.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from secure_export.routing import RouteDecision


class Condition(enum.StrEnum):
    """``essentials.monitorCondition`` of the common alert schema."""

    FIRED = "Fired"
    RESOLVED = "Resolved"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One accepted delivery, as a backend needs it (built by the dispatcher from an inbox row)."""

    alert_id: str
    """``essentials.alertId``: the Azure alert instance, shared by its Fired and Resolved."""
    condition: Condition
    correlation_key: str
    """What groups deliveries into one work item: the alert id under ``SECURE_EXPORT_CORRELATION=alert``,
    rule and target under ``rule-target``."""
    rule: str
    """``essentials.alertRule`` (the rule's name)."""
    severity: str | None
    """``Sev0``..``Sev4``; ``None`` where Azure sends none (cost alerts)."""
    signal_type: str | None = None
    monitoring_service: str | None = None
    target_ids: tuple[str, ...] = ()
    """``essentials.alertTargetIDs``: Azure resource ids."""
    configuration_items: tuple[str, ...] = ()
    """``essentials.configurationItems``: CI names to bind in the CMDB."""
    description: str | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    investigation_link: str | None = None
    """``essentials.investigationLink`` when Azure sends one (newer payloads)."""
    condition_summary: str | None = None
    """A short human-readable summary of what crossed which threshold, from ``alertContext``."""
    essentials: Mapping[str, Any] = field(default_factory=dict)
    """The raw ``essentials`` object, for backends that forward it (ServiceNow ``additional_info``)."""
    custom_properties: Mapping[str, str] = field(default_factory=dict)
    """``data.customProperties`` of the alert (routing matches on them)."""
    lifecycle_key: str = ""
    """Rule and targets (the ``rule-target`` key) whatever the correlation mode: the reopen window
    and flap damping look for an earlier item of the same rule on the same resources by it."""
    route: RouteDecision | None = None
    """Assignment group and fields from the routing file (set by the dispatcher); ``None``: unrouted."""
    lifecycle_reason: str | None = None
    """Why the receiver itself resolves this item (``stateless-ttl``, ``flap-quiet``, ``recovered``),
    for a Resolved it made; ``None`` for what Azure sent."""
    lifecycle_note: str | None = None
    """The note the backend writes when it resolves for ``lifecycle_reason``."""
    hold: str | None = None
    """For a Resolved of a flapping rule (``receiver.dispatch.lifecycle``): the note to write instead of resolving."""
    recovery: bool = False
    """A Fired that reports a recovery (resource health back to ``Available``): it resolves the
    open item of the same rule and resource and never opens one."""


class BackendError(Exception):
    """Base class of the failures a backend reports to the dispatcher."""


class TransientBackendError(BackendError):
    """Worth retrying later: outage, timeout, rate limit."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds the ITSM tool asked us to wait (``Retry-After``), if it said."""


class PermanentBackendError(BackendError):
    """Retrying cannot help; the row is parked as failed with this message."""


@dataclass(frozen=True, slots=True)
class WorkItemRef:
    """What a delivery became in the ITSM tool: its work item or incident number, and a link to it."""

    number: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether a backend can take work now, and why not."""

    ready: bool
    reason: str = ""


class Backend(abc.ABC):
    """An ITSM tool that turns alert events into work items."""

    name: str = "backend"

    async def start(self) -> None:
        """Open connections and check configuration; raise ``PermanentBackendError`` when it is wrong."""

    async def close(self) -> None:
        """Release connections; called once at shutdown."""

    async def readiness(self) -> Readiness:
        """Answer for ``/readyz``: can this backend be reached with the configured credentials?"""
        return Readiness(True)

    @abc.abstractmethod
    async def apply(self, event: AlertEvent) -> WorkItemRef | None:
        """Apply one event: Fired opens (or notes an occurrence on) a work item, Resolved resolves it.

        Returns the work item or incident the event was applied to, when there is one (the inbox
        records it for ``secure-export trace``). Must be idempotent for the same ``(event.alert_id, event.condition)``; must never leave an
        open work item behind when a Resolved arrived before its Fired.
        """
