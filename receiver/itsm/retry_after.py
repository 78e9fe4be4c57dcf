"""The ``Retry-After`` an ITSM tool (or its gateway) sends with a 429 or 503, as seconds to wait."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

import httpx


def retry_after(response: httpx.Response, cap: float) -> float | None:
    """Seconds the tool asked us to wait (delta-seconds or an HTTP date), capped; ``None`` when it did not say."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, min(seconds, cap))
