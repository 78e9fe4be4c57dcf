"""Durations as the receiver's environment takes them: seconds (``3600``) or ISO 8601 (``PT1H``, ``P1D``)."""

from __future__ import annotations

import re

_ISO = re.compile(
    r"P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


def parse_duration(value: object) -> float:
    """Seconds in ``value``; raises ``ValueError`` saying what is accepted.

    Years and months are refused: their length varies, and a window must mean one thing.
    """
    if isinstance(value, bool):
        raise ValueError("must be seconds or an ISO 8601 duration such as PT1H")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            match = _ISO.fullmatch(text)
            if match is None or text.upper() in ("P", "PT") or text.upper().endswith("T"):
                raise ValueError(
                    "must be seconds or an ISO 8601 duration such as PT1H, PT30M or P1D "
                    "(years and months are not accepted)"
                ) from None
            seconds = sum(float(amount) * _UNIT_SECONDS[unit] for unit, amount in match.groupdict().items() if amount)
    if seconds < 0 or seconds != seconds:
        raise ValueError("must not be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """``1h``, ``15min``, ``2d 3h``, ``45s``: for notes a person reads."""
    whole = int(round(seconds))
    if whole <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        amount, whole = divmod(whole, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return " ".join(parts[:2])
