"""The log line of an applied event, the same for both stores."""

from __future__ import annotations

import logging

from receiver.alerts.events import AlertEvent

_log = logging.getLogger("receiver.itsm.embedded")


def log_applied(event: AlertEvent, outcome: str) -> None:
    """``work_item_applied`` at DEBUG with what applying ``event`` did."""
    # DEBUG, not INFO: the applied_events row is the durable record of every applied event, and a
    # log line per alert would cost the dispatcher a noticeable share of its CPU.
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug(
            "work item event applied",
            extra={
                "event": "work_item_applied",
                "alert_id": event.alert_id,
                "condition": str(event.condition),
                "outcome": outcome,
            },
        )
