"""A periodic ``dispatch_summary`` log line: what was accepted and applied since the last one.

Accepted alerts and applied deliveries are logged at DEBUG only (the inbox is their record), so the
operators' alert "Azure sent alerts but none reached the ITSM tool for a while" needs a summary in
the logs: one INFO line per ``SECURE_EXPORT_ACTIVITY_LOG_SECONDS`` while anything happened or
anything is pending. The KQL that reads it is in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from prometheus_client import CollectorRegistry

from receiver.observability.metrics import InboxCounters

log = logging.getLogger(__name__)


def accepted_total(registry: CollectorRegistry) -> float:
    """New (not repeated) alerts answered 202 so far, from the metrics registry."""
    total = 0.0
    for family in registry.collect():
        if family.name != "secure_export_alerts_accepted":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("duplicate") == "false":
                total += sample.value
    return total


class DispatchProgress(Protocol):
    """What the summary reads from the dispatcher."""

    applied: int
    parked: int
    paused_reason: str | None


async def summary_loop(
    registry: CollectorRegistry, dispatcher: DispatchProgress, inbox: InboxCounters, interval: float
) -> None:
    """Log ``dispatch_summary`` every ``interval`` seconds while there is something to say."""
    last = (accepted_total(registry), dispatcher.applied, dispatcher.parked)
    while True:
        await asyncio.sleep(interval)
        now = (accepted_total(registry), dispatcher.applied, dispatcher.parked)
        accepted, applied, parked = (int(b - a) for a, b in zip(last, now, strict=True))
        last = now
        pending = inbox.depth()
        if accepted or applied or parked or pending:
            log.info(
                "dispatch summary",
                extra={
                    "event": "dispatch_summary",
                    "accepted": accepted,
                    "applied": applied,
                    "parked": parked,
                    "pending": pending,
                    "paused": dispatcher.paused_reason is not None,
                    "interval_seconds": interval,
                },
            )
