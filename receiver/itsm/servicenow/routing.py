"""Routing names (assignment group, business service, caller) resolved to sys_ids, with a cache.

A name that does not resolve is remembered for ``/readyz`` and the metric; the incident goes to the
default group with a work note (docs/routing.md). Names reach ``sysparm_query`` only after the
routing model refused what encoded queries cannot escape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from receiver.alerts.events import AlertEvent
from secure_export.routing import check_name

log = logging.getLogger("secure_export.servicenow")

__all__ = ["LOOKUPS", "NameResolver", "RoutedFields"]


@dataclass(frozen=True, slots=True)
class _Lookup:
    table: str
    columns: tuple[str, ...]
    """Columns compared with the name, in order of preference."""
    active_filter: bool


LOOKUPS: Mapping[str, _Lookup] = {
    "assignment_group": _Lookup("sys_user_group", ("name",), True),
    "business_service": _Lookup("cmdb_ci_service", ("name",), False),
    "caller": _Lookup("sys_user", ("user_name", "name"), True),
}
"""Routing set key (snake case) → where its name is looked up."""

Query = Callable[[str, str, str], Awaitable[list[dict[str, Any]]]]
"""``(table, sysparm_query, sysparm_fields)`` → rows."""


@dataclass(slots=True)
class RoutedFields:
    """What a route adds to a new incident, and the work-note lines that explain any fallback."""

    fields: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class NameResolver:
    """Name → sys_id for groups, services and users, cached with expiry; remembers what is missing."""

    def __init__(self, query: Query, *, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._query = query
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, str | None, str]] = {}
        self.unresolved: dict[tuple[str, str], str] = {}
        """``(kind, name)`` → why it is not resolved (not found, several records); cleared when it resolves.
        Kept until then, so ``/readyz`` and the metric keep showing a name nobody fixed."""
        self.lookups = 0
        """Queries sent (cache misses)."""

    async def resolve(self, kind: str, name: str) -> str | None:
        """The sys_id of ``name`` in the table of ``kind``, or None (recorded in :attr:`unresolved`)."""
        lookup = LOOKUPS[kind]
        key = (kind, name.casefold())
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            check_name(name)
        except ValueError as error:
            return self._remember(key, name, None, f"not looked up: {error}")
        condition = "^OR".join(f"{column}={name}" for column in lookup.columns)
        if lookup.active_filter:
            condition = f"{condition}^active=true"
        fields = ",".join(("sys_id", *lookup.columns))
        self.lookups += 1
        rows = await self._query(lookup.table, condition, fields)
        for column in lookup.columns:
            matching = [row for row in rows if str(row.get(column, "")).casefold() == name.casefold()]
            if len(matching) == 1:
                return self._remember(key, name, str(matching[0]["sys_id"]), "")
            if len(matching) > 1:
                return self._remember(key, name, None, f"several {lookup.table} records are named {name!r}")
        return self._remember(
            key,
            name,
            None,
            f"no active {lookup.table} record is named {name!r}"
            if lookup.active_filter
            else f"no {lookup.table} record is named {name!r}",
        )

    def _remember(self, key: tuple[str, str], name: str, sys_id: str | None, why: str) -> str | None:
        self._cache[key] = (self._clock() + self._ttl, sys_id, why)
        shown = (key[0], name)
        if sys_id is None:
            if shown not in self.unresolved:
                log.warning(
                    "servicenow routing name not found",
                    extra={
                        "event": "servicenow_routing_unresolved",
                        "kind": key[0],
                        "routing_name": name,
                        "reason": why,
                    },
                )
            self.unresolved[shown] = why
        else:
            self.unresolved.pop(shown, None)
        return sys_id

    def problems(self) -> list[str]:
        """One line per name that did not resolve, for ``/readyz`` detail."""
        return [f"routing {kind} {why}" for (kind, _name), why in sorted(self.unresolved.items())]

    async def routed_fields(self, event: AlertEvent, fallback_group: str | None) -> RoutedFields:
        """The incident fields of ``event.route``; an unknown group falls back to the default's group.

        ``fallback_group`` is ``SECURE_EXPORT_SERVICENOW_ASSIGNMENT_GROUP`` (a sys_id), used when the
        routing file's default group does not resolve either.
        """
        route = event.route
        result = RoutedFields()
        if route is None:
            if fallback_group:
                result.fields["assignment_group"] = fallback_group
            return result
        if route.category:
            result.fields["category"] = route.category
        if route.subcategory:
            result.fields["subcategory"] = route.subcategory
        result.fields |= dict(route.fields)
        for kind, column in (("business_service", "business_service"), ("caller", "caller_id")):
            name = getattr(route, kind)
            if not name:
                continue
            sys_id = await self.resolve(kind, name)
            if sys_id:
                result.fields[column] = sys_id
            else:
                result.notes.append(
                    f"{_LABELS[kind]} {name!r} ({route.rule}) does not exist in ServiceNow; left empty."
                )
        group = route.assignment_group
        if group:
            sys_id = await self.resolve("assignment_group", group)
            if sys_id:
                result.fields["assignment_group"] = sys_id
                return result
            default = route.default_group if route.default_group and route.default_group != group else None
            default_id = await self.resolve("assignment_group", default) if default else None
            target = default if default_id else ("the configured default group" if fallback_group else None)
            result.fields["assignment_group"] = default_id or fallback_group
            if target:
                result.notes.append(
                    f"Assignment group {group!r} ({route.rule}) does not exist in ServiceNow (sys_user_group); "
                    f"assigned to {target} instead."
                )
            else:
                result.notes.append(
                    f"Assignment group {group!r} ({route.rule}) does not exist in ServiceNow (sys_user_group), "
                    "and no default group resolves; left unassigned."
                )
        elif fallback_group:
            result.fields["assignment_group"] = fallback_group
        if result.fields.get("assignment_group") is None:
            result.fields.pop("assignment_group", None)
        return result


_LABELS = {"business_service": "Business service", "caller": "Caller"}
