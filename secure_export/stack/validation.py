"""Checks shared by the stack-config models and the components.

The components validate their own arguments (another team's program may call them without our
config models), and the config models reuse the same rules so that a bad stack file and a bad
component call fail with the same wording.
"""

from __future__ import annotations

import functools
import re
import uuid
from typing import Any

import pulumi

from secure_export.contract import SECURE_WEBHOOK_ROLE

_ISO_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


def duration_seconds(value: str) -> int:
    """Return the length of an ISO-8601 duration such as ``PT5M`` or ``P1D`` in seconds.

    Raises ValueError for anything else (Azure Monitor takes only day/time durations).
    """
    # A stack uses a handful of durations, each checked ~12 times per rule (config models twice,
    # the component once): parse each string once. Errors are not cached; other types are not hashed.
    if isinstance(value, str):
        return _string_duration_seconds(value)
    raise ValueError(f"must be an ISO-8601 duration such as PT5M or P1D, got {value!r}")


@functools.lru_cache(maxsize=256)
def _string_duration_seconds(value: str) -> int:
    match = _ISO_DURATION.match(value)
    if match is None or value in ("P", "PT") or value.endswith("T"):
        raise ValueError(f"must be an ISO-8601 duration such as PT5M or P1D, got {value!r}")
    parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    seconds = (
        parts.get("days", 0) * 86400
        + parts.get("hours", 0) * 3600
        + parts.get("minutes", 0) * 60
        + parts.get("seconds", 0)
    )
    if seconds <= 0:
        raise ValueError(f"must be a positive ISO-8601 duration, got {value!r}")
    return seconds


def check_severity(value: object) -> int:
    """Return the severity if it is an integer 0..4 (Sev0 is the most severe)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"must be an integer 0..4, got {value!r}")
    if not 0 <= int(value) <= 4:
        raise ValueError(f"must be 0..4, got {int(value)}")
    return int(value)


def check_frequency_within_window(frequency: str, window: str) -> None:
    """Raise ValueError if the evaluation frequency is longer than the window it evaluates."""
    if duration_seconds(frequency) > duration_seconds(window):
        raise ValueError(
            f"evaluation frequency {frequency} is longer than the window {window}; "
            "use a window at least as long as the frequency"
        )


def check_short_name(value: object) -> str:
    """Return an action group short name if it has 1..12 characters (Azure's limit)."""
    if not isinstance(value, str) or not 1 <= len(value) <= 12:
        raise ValueError(f"must be 1..12 characters, got {value!r}")
    return value


_TENANT_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def checked_tenant_id(owner: str, value: Any) -> Any:
    """``value`` if it is a tenant GUID: a string is checked now, an Output once it is known.

    Tokens and action groups name the tenant only by its GUID: a domain name would deploy a
    receiver that refuses to start (and a webhook Azure cannot authenticate), so say so now. A
    bad value only known at deployment (read from another stack, say) fails ``pulumi up`` with
    the same message.
    """

    def check(tenant: Any) -> Any:
        if isinstance(tenant, str) and not _TENANT_GUID.fullmatch(tenant):
            raise ValueError(
                f"{owner}: tenant_id must be the Directory (tenant) ID, a GUID such as "
                f"72f988bf-86f1-41af-91ab-2d7cd011db47 (`az account show --query tenantId`), not {tenant!r}"
            )
        return tenant

    if isinstance(value, str):
        return check(value)
    return pulumi.Output.from_input(value).apply(check)


def check_scopes(value: object) -> list[str]:
    """Return a non-empty list of Azure resource ids."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("must list at least one Azure resource id")
    for scope in value:
        if not isinstance(scope, str) or not scope.lower().startswith("/subscriptions/"):
            raise ValueError(f"must be Azure resource ids starting with /subscriptions/, got {scope!r}")
    return list(value)


def is_multi_resource(scopes: list[str]) -> bool:
    """Whether a metric rule's scopes watch several resources (a rule then needs a target type and region)."""
    # A subscription or resource-group scope watches every matching resource in it.
    return len(scopes) > 1 or any(len(s.strip("/").split("/")) <= 4 for s in scopes)


def subscription_of(resource_id: str) -> str | None:
    """Return the subscription id of an Azure resource id, or None if it names none."""
    parts = resource_id.split("/")
    if len(parts) > 2 and parts[1].lower() == "subscriptions" and parts[2]:
        return parts[2].lower()
    return None


def stable_role_id(project: str, stack: str, role: str = SECURE_WEBHOOK_ROLE) -> str:
    """Return the app role id for a stack: a UUID derived from project, stack and role name.

    Azure AD needs a UUID; a random one per run would show up as a diff in every preview.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"secure-export/{project}/{stack}/{role}"))
