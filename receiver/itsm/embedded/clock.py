"""Timestamps as the embedded backend stores them: ISO-8601 UTC to the millisecond, with a ``Z``."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from receiver.storage.records import iso_at

__all__ = ["iso", "iso_ago", "now"]


def iso(moment: datetime) -> str:
    """``moment`` as stored; a naive datetime (some legacy payloads) is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> str:
    """The current time as stored."""
    return iso(datetime.now(UTC))


def iso_ago(seconds: float) -> str:
    """The time ``seconds`` ago as stored (a retention cutoff)."""
    return iso_at(time.time() - seconds)
