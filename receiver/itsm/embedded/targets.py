"""What an alert names: its configuration items (once each, case-insensitively) and their Azure resource ids."""

from __future__ import annotations

from collections.abc import Iterable

from receiver.alerts.events import AlertEvent

__all__ = ["ci_bindings", "resource_name", "unique_names"]


def resource_name(resource_id: str) -> str:
    """The last path segment of an Azure resource id (the resource's name)."""
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def unique_names(names: Iterable[str]) -> list[str]:
    """The non-blank names, stripped, each once (compared case-insensitively), in order."""
    seen: set[str] = set()
    unique: list[str] = []
    for raw in names:
        name = raw.strip() if isinstance(raw, str) else ""
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            unique.append(name)
    return unique


def _match_resource_id(name: str, target_ids: Iterable[str]) -> str | None:
    """The target whose last path segment is ``name`` (or which *is* ``name``), case-insensitively."""
    key = name.casefold()
    for target in target_ids:
        if target.casefold() == key or resource_name(target).casefold() == key:
            return target
    return None


def ci_bindings(event: AlertEvent) -> list[tuple[str, str | None]]:
    """Each CI ``event`` names, with the ``alertTargetIDs`` entry that is that resource (if any)."""
    return [(name, _match_resource_id(name, event.target_ids)) for name in unique_names(event.configuration_items)]
