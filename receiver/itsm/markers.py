"""What ITSM backends write into their tools to recognise their own work: correlation ids and markers.

Hex only, so safe in any query language whatever the alert's text; docs/servicenow.md,
"Idempotency and replays", describes how replays and grouped incidents use them.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from receiver.alerts.events import Condition

MARKER = re.compile(r"semark-([0-9a-f]{24})-(fired|resolved|held)")


def correlation_id(correlation_key: str) -> str:
    """The value stored in the incident's correlation field: short, hex only, safe in any query."""
    return "azmon:" + hashlib.sha256(correlation_key.encode()).hexdigest()[:40]


def lifecycle_id(lifecycle_key: str) -> str:
    """The value stored in the incident's ``correlation_display``: the rule and targets, hashed like the key.

    The reopen window and resource health recovery find the latest incident of the same rule on the
    same resources by it, whatever ``SECURE_EXPORT_CORRELATION`` groups by.
    """
    return "azmon-lc:" + hashlib.sha256(lifecycle_key.encode()).hexdigest()[:40]


def occurrence_marker(alert_id: str, condition: Condition | str) -> str:
    """The marker written into a note for one ``(alert_id, condition)``: hex, LIKE-safe."""
    digest = hashlib.sha256(alert_id.encode()).hexdigest()[:24]
    return f"semark-{digest}-{str(condition).lower()}"


def markers_in(text: Any) -> set[str]:
    """The occurrence markers in a text field."""
    return {match.group(0) for match in MARKER.finditer(str(text or ""))}


def held_marker(alert_id: str) -> str:
    """The marker written beside a Resolved that flap damping held: proof the incident stays open on purpose."""
    return occurrence_marker(alert_id, "held")


def is_held(markers: set[str]) -> bool:
    """Whether flap damping held one of the incident's Resolved deliveries (see :func:`held_marker`)."""
    return any(marker.endswith("-held") for marker in markers)


def still_firing(markers: set[str]) -> set[str]:
    """Alert hashes with a Fired marker and no Resolved marker."""
    fired: set[str] = set()
    resolved: set[str] = set()
    for marker in markers:
        match = MARKER.fullmatch(marker)
        if match:
            if match.group(2) == "fired":
                fired.add(match.group(1))
            elif match.group(2) == "resolved":
                resolved.add(match.group(1))
    return fired - resolved
