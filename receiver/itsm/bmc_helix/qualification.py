"""AR System qualifications (the REST API's ``q`` parameter) built only from escaped parts.

BMC's rules: field names go in single quotes, a single quote inside doubled (``'Doug''s Requests'``);
character values go in double quotes, a double quote inside doubled (``"Robert ""Bobby"" Smith"``)
[BMC-QUAL]. Every value from an alert passes through :func:`value`; nothing is concatenated raw.
Control characters cannot be written into a qualification at all, so such a value is refused
(:class:`UnsafeValue`) and the caller skips the lookup.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_VALUE = 255


class UnsafeValue(ValueError):
    """A value that cannot be put into a qualification (control characters, or too long)."""


def field(name: str) -> str:
    """A field name as a qualification operand: ``'Incident Number'``."""
    if _CONTROL.search(name) or not name:
        raise UnsafeValue("a field name must be non-empty and free of control characters")
    return "'" + name.replace("'", "''") + "'"


def value(text: str) -> str:
    """A character value as a qualification literal: ``"vm ""web"" 01"``."""
    if _CONTROL.search(text):
        raise UnsafeValue("the value contains control characters")
    if len(text) > _MAX_VALUE:
        raise UnsafeValue(f"the value is longer than {_MAX_VALUE} characters")
    return '"' + text.replace('"', '""') + '"'


def equals(name: str, text: str) -> str:
    """``'name' = "text"``."""
    return f"{field(name)} = {value(text)}"


def not_equals(name: str, text: str) -> str:
    """``'name' != "text"``."""
    return f"{field(name)} != {value(text)}"


def all_of(*conditions: str) -> str:
    """The conditions joined with ``AND``, each in parentheses."""
    return " AND ".join(f"({condition})" for condition in conditions)
