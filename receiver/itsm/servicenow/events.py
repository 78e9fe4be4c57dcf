"""The Event Management target: one ``em_event`` per delivery, posted to ``/api/global/em/jsonv2``.

Event Management deduplicates by ``message_key`` (the hashed correlation key) and its own rules
open the incidents; a Resolved posts severity 0 (Clear) with ``resolution_state`` Closing.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from receiver.alerts.events import AlertEvent, Condition
from receiver.itsm.markers import correlation_id
from receiver.itsm.servicenow import render
from receiver.itsm.servicenow.client import ServiceNowClient
from receiver.itsm.servicenow.settings import ServiceNowSettings

log = logging.getLogger("secure_export.servicenow")

EVENTS_PATH = "/api/global/em/jsonv2"


class EventPoster:
    """Posts deliveries to Event Management."""

    def __init__(self, settings: ServiceNowSettings, client: ServiceNowClient) -> None:
        self._settings = settings
        self._client = client

    def record(self, event: AlertEvent) -> dict[str, str]:
        """The ``em_event`` a delivery becomes (fields cut to their column lengths)."""
        resolved = event.condition is Condition.RESOLVED
        names = [n for n in event.configuration_items if n]
        resource = event.target_ids[0].rstrip("/").rsplit("/", 1)[-1] if event.target_ids else ""
        when = (event.resolved_at if resolved else event.fired_at) or datetime.now(UTC)
        return {
            "source": self._settings.event_source[:100],
            "event_class": "secure-export",
            "node": (names[0] if names else resource)[:100],
            "type": (event.signal_type or "Azure Monitor alert")[:100],
            "resource": resource[:100],
            "metric_name": event.rule[:100],
            "message_key": correlation_id(event.correlation_key),
            "severity": "0" if resolved else str(self._settings.event_severity(event.severity)),
            "resolution_state": "Closing" if resolved else "New",
            "time_of_event": when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "description": render.description(event, [])[:4000],
            "additional_info": json.dumps(render.additional_info(event), sort_keys=True),
        }

    async def post(self, event: AlertEvent) -> None:
        """Post the delivery's event."""
        record = self.record(event)
        await self._client.call("POST", EVENTS_PATH, table="em_event", body={"records": [record]})
        log.info(
            "servicenow event posted",
            extra={
                "event": "servicenow_event_posted",
                "message_key": record["message_key"],
                "severity": record["severity"],
                "alert_id": event.alert_id,
            },
        )
