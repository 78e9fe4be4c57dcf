"""Configuration items for an incident, from the CMDB: by Azure resource id, then by CI name.

Exactly one match binds (``cmdb_ci``); none or several leave the incident unbound and its
description says why. Answers are cached for ``ci_cache_ttl_seconds``; with
``SECURE_EXPORT_SERVICENOW_CREATE_CIS`` a resource nobody knows gets a new CI.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from receiver.alerts.events import AlertEvent
from receiver.itsm.expiring_cache import ExpiringCache
from receiver.itsm.servicenow.client import ServiceNowClient
from receiver.itsm.servicenow.settings import ServiceNowSettings

log = logging.getLogger("secure_export.servicenow")

_QUERY_SAFE = re.compile(r"[A-Za-z0-9._:/-]{1,255}")


def query_safe(value: str) -> bool:
    """Whether a CI name or resource id may go into ``sysparm_query``.

    Encoded queries have no escape for ``^`` (condition separator, ``^OR``, ``^NQ``) and evaluate
    values starting with ``javascript:`` on the server, so only a conservative character set passes.
    """
    return bool(_QUERY_SAFE.fullmatch(value)) and "javascript:" not in value.casefold()


@dataclass(frozen=True, slots=True)
class ConfigurationItem:
    """A CI the incident is bound to (``cmdb_ci``)."""

    sys_id: str
    name: str


@dataclass(frozen=True, slots=True)
class CiLookup:
    """What the CMDB said about one resource id or CI name (a line of the description)."""

    label: str
    item: ConfigurationItem | None
    note: str


class CmdbBinder:
    """Finds (or, when configured, creates) the CI an alert's incident is bound to."""

    def __init__(
        self, settings: ServiceNowSettings, client: ServiceNowClient, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._client = client
        self._cache: ExpiringCache[tuple[str, str], CiLookup] = ExpiringCache(
            settings.ci_cache_ttl_seconds, clock=clock
        )

    async def bind(self, event: AlertEvent) -> tuple[ConfigurationItem | None, list[str]]:
        """Look every resource id and CI name up; the first match is bound, all are described."""
        settings = self._settings
        lookups: list[CiLookup] = []
        for resource_id in event.target_ids:
            lookups.append(await self._lookup(settings.ci_lookup_field, resource_id))
        seen = {lookup.item.name.casefold() for lookup in lookups if lookup.item}
        for name in event.configuration_items:
            if name.casefold() in seen:
                continue
            lookups.append(await self._lookup("name", name))
        if settings.create_cis and not any(lookup.item for lookup in lookups):
            lookups = [await self._create(event), *lookups]
        bound = next((lookup.item for lookup in lookups if lookup.item), None)
        return bound, [f"{lookup.label}: {lookup.note}" for lookup in lookups]

    async def _lookup(self, field: str, value: str) -> CiLookup:
        label = f"{field} {value!r}"
        if not query_safe(value):
            return CiLookup(label, None, "not looked up (characters outside [A-Za-z0-9._:/-])")
        key = (field, value.casefold())
        cached = self._cache.get(key)
        if cached is not None:
            return CiLookup(label, cached.item, cached.note)
        table = self._settings.ci_table
        fields = ",".join(dict.fromkeys(("sys_id", "name", "sys_class_name", field)))
        rows = await self._client.rows(table, f"{field}={value}", fields)
        matching = [row for row in rows if str(row.get(field, "")).casefold() == value.casefold()]
        item: ConfigurationItem | None = None
        if len(matching) == 1:
            row = matching[0]
            item = ConfigurationItem(str(row["sys_id"]), str(row.get("name") or value))
            note = f"{item.name} ({row.get('sys_class_name') or table}, sys_id {item.sys_id})"
        elif matching:
            note = "ambiguous: several CIs match, none bound"
        else:
            note = "not found in the CMDB"
        lookup = CiLookup(label, item, note)
        self._cache.put(key, lookup)
        return lookup

    async def _create(self, event: AlertEvent) -> CiLookup:
        resource_id = next((r for r in event.target_ids if query_safe(r)), None)
        name = next((n for n in event.configuration_items if query_safe(n)), None)
        if name is None and resource_id is not None:
            name = resource_id.rstrip("/").rsplit("/", 1)[-1]
        if name is None:
            return CiLookup("new CI", None, "not created: no usable name")
        record = {"name": name}
        if resource_id is not None:
            record[self._settings.ci_lookup_field] = resource_id
        table = self._settings.ci_table
        result = await self._client.call(
            "POST", f"/api/now/table/{table}", table=table, params={"sysparm_fields": "sys_id,name"}, body=record
        )
        sys_id = str(result.get("sys_id")) if isinstance(result, dict) else ""
        if not sys_id:
            return CiLookup(f"new CI {name}", None, "not created: ServiceNow returned no sys_id")
        self._cache.forget((self._settings.ci_lookup_field, (resource_id or "").casefold()))
        self._cache.forget(("name", name.casefold()))
        log.info("servicenow ci created", extra={"event": "servicenow_ci_created", "ci_name": name, "sys_id": sys_id})
        return CiLookup(f"new CI {name}", ConfigurationItem(sys_id, name), f"created in {table} (sys_id {sys_id})")
