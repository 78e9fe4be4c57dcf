"""Reading BMC's answers: AR error lists as one line.

The AR System REST API reports errors as a JSON list of
``{"messageType": "ERROR", "messageNumber": 326, "messageText": "...", "messageAppendedText": "..."}``;
that text is what an operator needs to see in a parked row.
"""

from __future__ import annotations

import httpx


def ar_message(response: httpx.Response) -> str:
    """BMC's own error message(s) as one line (or the start of a non-JSON body)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        if text.startswith("<"):  # a gateway's or maintenance HTML page: its markup says nothing useful
            return f"{response.reason_phrase} (an HTML page, not AR System JSON)".strip()
        return text[:200] or response.reason_phrase
    items = body if isinstance(body, list) else [body]
    parts = []
    for item in items:
        if not isinstance(item, dict):
            continue
        number = item.get("messageNumber")
        text = str(item.get("messageText") or "").strip()
        appended = str(item.get("messageAppendedText") or item.get("appendedText") or "").strip()
        kind = str(item.get("messageType") or "ERROR")
        line = f"{kind} {number}: {text}" if number is not None else f"{kind}: {text}"
        parts.append(f"{line} ({appended})" if appended else line)
    return "; ".join(parts) or response.reason_phrase
