"""Configuration items for an alert, from BMC's CMDB: by Azure resource id, then by name.

CIs are read from ``BMC.CORE:BMC_BaseElement`` (the base form every CI class inherits) in the
configured dataset (``BMC.ASSET``, the reconciled production dataset), first comparing the
configured attribute (``CloudId`` by default) with each ``alertTargetIDs`` entry, then ``Name``
with each ``configurationItems`` entry. Exactly one match binds; none or several leave the
incident unbound and say so in its description. Results are cached for ``ci_cache_ttl_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from receiver.alerts.events import AlertEvent
from receiver.itsm.bmc_helix import qualification as q
from receiver.itsm.bmc_helix.client import ArClient
from receiver.itsm.bmc_helix.settings import BmcSettings
from receiver.itsm.expiring_cache import ExpiringCache

CI_FORM = "BMC.CORE:BMC_BaseElement"


@dataclass(frozen=True, slots=True)
class Ci:
    """A CI as the incident binds it: ``HPD_CI`` (name) and ``HPD_CI_ReconID``."""

    name: str
    reconciliation_id: str
    class_id: str


@dataclass(frozen=True, slots=True)
class CiOutcome:
    """What the CMDB said about one resource id or CI name (for the incident's description)."""

    label: str
    match: Ci | None
    note: str


class CiFinder:
    """Looks alerts' resources up in the CMDB."""

    def __init__(self, settings: BmcSettings, client: ArClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._client = client
        self._cache: ExpiringCache[tuple[str, str], CiOutcome] = ExpiringCache(
            settings.ci_cache_ttl_seconds, clock=clock
        )

    async def bind(self, event: AlertEvent) -> tuple[Ci | None, list[str]]:
        """The CI to bind (first match by resource id, then by name) and one line per lookup."""
        outcomes = [await self._lookup(self._settings.ci_id_attribute, rid) for rid in event.target_ids]
        seen = {o.match.name.casefold() for o in outcomes if o.match}
        outcomes += [
            await self._lookup("Name", name) for name in event.configuration_items if name.casefold() not in seen
        ]
        bound = next((o.match for o in outcomes if o.match), None)
        return bound, [f"{o.label}: {o.note}" for o in outcomes]

    async def _lookup(self, attribute: str, wanted: str) -> CiOutcome:
        label = f"{attribute} {wanted!r}"
        try:
            condition = q.all_of(q.equals(attribute, wanted), q.equals("DatasetId", self._settings.ci_dataset))
        except q.UnsafeValue as error:
            return CiOutcome(label, None, f"not looked up ({error})")
        key = (attribute, wanted.casefold())
        cached = self._cache.get(key)
        if cached is not None:
            return CiOutcome(label, cached.match, cached.note)
        fields = list(dict.fromkeys(("Name", "ReconciliationIdentity", "ClassId", "DatasetId", attribute)))
        rows = await self._client.entries(CI_FORM, condition, fields)
        # Check what came back: the match must really be the value asked for, in the dataset asked for.
        matching = [
            row
            for row in rows
            if str(row.get(attribute) or "").casefold() == wanted.casefold()
            and row.get("DatasetId") == self._settings.ci_dataset
            and row.get("ReconciliationIdentity")
        ]
        match: Ci | None = None
        if len(matching) == 1:
            row = matching[0]
            match = Ci(
                str(row.get("Name") or wanted), str(row["ReconciliationIdentity"]), str(row.get("ClassId") or "")
            )
            note = f"{match.name} ({match.class_id or 'CI'}, ReconciliationIdentity {match.reconciliation_id})"
        elif matching:
            note = "ambiguous: several CIs match, none bound"
        else:
            note = "not found in the CMDB"
        outcome = CiOutcome(label, match, note)
        self._cache.put(key, outcome)
        return outcome
