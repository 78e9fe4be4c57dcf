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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from receiver.alerts.events import AlertEvent
from receiver.storage.records import WorkItemRef


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


class CredentialsRejected(TransientBackendError):
    """The ITSM tool refused the configured credentials (a 401, or a refused token or login).

    Transient on purpose: alerts wait in the inbox until an operator fixes the credentials; ``/readyz``
    reports this reason meanwhile, and since the backend then reports not ready the dispatcher pauses
    rather than counting the refused attempts toward its limit.
    """


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether a backend can take work now, and why not."""

    ready: bool
    reason: str = ""


class Backend(abc.ABC):
    """An ITSM tool that turns alert events into work items."""

    name: str = "backend"

    async def start(self) -> None:  # noqa: B027 - an optional hook: most backends have nothing to start
        """Open connections and check configuration; raise ``PermanentBackendError`` when it is wrong."""

    async def close(self) -> None:  # noqa: B027 - an optional hook: most backends hold nothing to release
        """Release connections; called once at shutdown."""

    async def readiness(self) -> Readiness:
        """Answer for ``/readyz``: can this backend be reached with the configured credentials?"""
        return Readiness(True)

    @abc.abstractmethod
    async def apply(self, event: AlertEvent) -> WorkItemRef | None:
        """Apply one event: Fired opens (or notes an occurrence on) a work item, Resolved resolves it.

        Returns the work item or incident the event was applied to, when there is one (the inbox
        records it for ``secure-export trace``). Must be idempotent for the same
        ``(event.alert_id, event.condition)``; must never leave an open work item behind when a
        Resolved arrived before its Fired.
        """


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """One family of a backend's own metrics, read at scrape time: its samples by label values."""

    name: str
    """Prometheus name without ``_total``, e.g. ``secure_export_servicenow_http_requests``."""
    documentation: str
    labels: tuple[str, ...]
    samples: Mapping[tuple[str, ...], float]
    """Value per tuple of label values (in the order of :attr:`labels`); labels are bounded sets."""
    kind: Literal["counter", "gauge"] = "counter"


@runtime_checkable
class BackendCounters(Protocol):
    """A backend that reports metrics of its own (ServiceNow, BMC Helix): typed, never read by attribute name."""

    def metric_families(self) -> Sequence[MetricFamily]:
        """The backend's metric families as they stand now."""
        ...
