"""Placeholders left in a stack file: example domains, example GUIDs, the placeholder digest and secret.

The example stacks are templates; ``plan`` warns about every value in them (or in a stack copied
from them) that still names something that cannot exist in the user's tenant, one line per key,
so the list of warnings is the checklist of what to replace before ``pulumi up``
(docs/infrastructure.md, "Placeholders").
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any

EXAMPLE_NAMES = ("contoso", "fabrikam", "northwind", "adventure-works", "adventureworks", "wingtiptoys", "example")
"""Names Microsoft's and the IETF's documentation reserve for examples; matched anywhere in a value."""
_EXAMPLE = re.compile("|".join(re.escape(n) for n in EXAMPLE_NAMES), re.IGNORECASE)
_GUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)
DOC_GUIDS = frozenset({"12345678-1234-1234-1234-123456789012", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"})
"""Example GUIDs from documentation that a random GUID is never equal to."""
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
"""The digest of zero bytes: no image has it."""
_PROSE_KEYS = frozenset({"description", "displayName", "query", "name", "metricName", "metricNamespace"})
"""Free text and Azure-side names: an example word there is not an address."""


def example_guid(guid: str) -> bool:
    """A GUID no generator produces: at most four distinct hex digits (``0000...``, ``1111-...``), or a doc one."""
    digits = guid.lower().replace("-", "")
    return len(set(digits)) <= 4 or guid.lower() in DOC_GUIDS


def placeholder_digest(digest: str) -> bool:
    """An image digest that names no build: at most two distinct hex digits, or the empty input's."""
    hexdigits = digest.lower().removeprefix("sha256:")
    return len(set(hexdigits)) <= 2 or hexdigits == EMPTY_SHA256


def placeholder_ciphertext(ciphertext: str) -> bool:
    """A ``secure:`` value that is readable text, not ciphertext (real ciphertext is random bytes)."""
    body = ciphertext.removeprefix("v1:").split(":")[-1]
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return True  # not even base64: no secrets provider wrote it
    if len(raw) < 8:
        return True
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return False
    return text.isprintable()


def _strings(value: Any, path: str) -> Iterator[tuple[str, str, str]]:
    """Yield (key path, last key, string) for every string in a dumped config."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, path.rsplit(".", 1)[-1].split("[", 1)[0], value


def placeholder_reasons(key: str, value: str) -> list[str]:
    """Why ``value`` (under ``key``) is a placeholder; empty if it is not one."""
    if key in _PROSE_KEYS:
        return []
    reasons = []
    example = _EXAMPLE.search(value)
    if example:
        reasons.append(f"names {example.group(0)!r}, a documentation example")
    guids = sorted({g for g in _GUID.findall(value) if example_guid(g)})
    if guids:
        reasons.append(f"holds the example GUID {', '.join(guids)}")
    if key == "digest" and placeholder_digest(value):
        reasons.append("is a placeholder digest (push the image and pin the digest CI printed)")
    return reasons


def config_placeholders(dumped: dict[str, Any]) -> list[tuple[str, str]]:
    """(key path under ``secure-export:``, reason) for every placeholder in a config dumped by alias."""
    found = []
    for path, key, value in _strings(dumped, ""):
        reasons = placeholder_reasons(key, value)
        if reasons:
            found.append((path, "; ".join(reasons)))
    return found
