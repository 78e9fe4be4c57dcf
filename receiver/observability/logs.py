"""Structured logging: one JSON object per line on stderr, never a token or a secret.

The receiver logs events, not requests' secrets: code passes facts as ``extra={...}`` fields
(``event``, ``status``, ``alert_id``, ...) and never the ``Authorization`` header. As a second line
of defence, :class:`JsonFormatter` scrubs anything shaped like a bearer token or a JWT from the
message, the extra fields and exception text before a line is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*\.?[A-Za-z0-9_\-]*")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_SECRET_KEYS = re.compile(r"(?i)(authorization|password|secret|token|cookie|api[_-]?key)")
REDACTED = "[redacted]"

# Attributes every LogRecord has; everything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured duplicate of the message
}


def redact(text: str) -> str:
    """Remove bearer tokens and JWTs from free text."""
    return _JWT_RE.sub(REDACTED, _BEARER_RE.sub(r"\1" + REDACTED, text))


def _clean(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key) and not key.endswith(("_count", "_total")) and key not in ("token_version",):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ``ts``, ``level``, ``logger``, ``message`` and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _clean(key, value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", stream: Any = None) -> logging.Handler:
    """Send the process's logs (receiver, uvicorn) as JSON lines to ``stream`` (stderr).

    Called once by ``secure-export serve``; in-process test servers leave logging alone.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # uvicorn's access log would add a line per alert; the request metrics cover it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # The Azure SDK logs every token request and response at INFO; its warnings (a failed token) stay.
    logging.getLogger("azure").setLevel(logging.WARNING)
    return handler
