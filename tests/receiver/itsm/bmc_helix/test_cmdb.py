"""CI binding from BMC's CMDB: by Azure resource id, then by name; escaped, checked, cached."""

from __future__ import annotations

import pytest

from receiver.itsm.markers import correlation_id
from tests.receiver.itsm.bmc_helix.helpers import (
    SUBSCRIPTION,
    VM_ID,
    ManualClock,
    alert_id,
    event,
    started_backend,
)
from tests.support.itsm_fakes.bmc_helix import FakeBmc

pytestmark = pytest.mark.anyio

OTHER_VM = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/vm-db-01"


def _bound(fake: FakeBmc, n: int = 1) -> dict:
    [incident] = fake.incident(**{"Vendor Ticket Number": correlation_id(alert_id(n))})
    return incident


async def _apply(fake: FakeBmc, *events, **overrides) -> None:
    async with started_backend(fake, **overrides) as backend:
        for item in events:
            await backend.apply(item)


async def test_resource_id_wins_over_the_name(fake: FakeBmc) -> None:
    by_name = fake.add_ci("vm-db-01")
    by_id = fake.add_ci("vm-db-01.contoso.local", cloud_id=OTHER_VM)
    await _apply(fake, event(1, target_ids=(OTHER_VM,), configuration_items=("vm-db-01",)))
    incident = _bound(fake)
    assert incident["HPD_CI_ReconID"] == by_id["ReconciliationIdentity"] != by_name["ReconciliationIdentity"]
    assert "CloudId" in incident["Detailed Decription"] and "vm-db-01.contoso.local" in incident["Detailed Decription"]


async def test_the_name_binds_when_no_ci_has_the_resource_id(fake: FakeBmc) -> None:
    ci = fake.add_ci("vm-db-01")
    await _apply(fake, event(1, target_ids=(OTHER_VM,), configuration_items=("vm-db-01",)))
    incident = _bound(fake)
    assert (incident["HPD_CI"], incident["HPD_CI_ReconID"]) == ("vm-db-01", ci["ReconciliationIdentity"])
    assert "not found in the CMDB" in incident["Detailed Decription"]


async def test_ambiguous_names_and_other_datasets_bind_nothing(fake: FakeBmc) -> None:
    fake.add_ci("vm-db-01")
    fake.add_ci("vm-db-01")
    fake.add_ci("vm-sandbox", dataset="BMC.SANDBOX")
    await _apply(fake, event(1, target_ids=(), configuration_items=("vm-db-01", "vm-sandbox")))
    incident = _bound(fake)
    assert not incident.get("HPD_CI_ReconID")
    assert "ambiguous" in incident["Detailed Decription"]


async def test_names_with_quotes_are_escaped_not_injected(fake: FakeBmc) -> None:
    fake.add_ci("vm-a")
    fake.add_ci("vm-b")
    hostile = "x\" OR 'Name' LIKE \"vm-%"
    await _apply(fake, event(1, target_ids=(), configuration_items=(hostile,)))
    incident = _bound(fake)
    assert not incident.get("HPD_CI_ReconID")  # unescaped, this would have matched vm-a and vm-b
    [lookup] = [p for p in fake.qualifications if p.form == "BMC.CORE:BMC_BaseElement"]
    assert lookup.tree[1] == ("CMP", "=", ("field", "Name"), ("value", hostile))


async def test_names_with_control_characters_are_not_looked_up(fake: FakeBmc) -> None:
    await _apply(fake, event(1, target_ids=(), configuration_items=("vm\nweb",)))
    assert "not looked up" in _bound(fake)["Detailed Decription"]
    assert not [p for p in fake.qualifications if p.form == "BMC.CORE:BMC_BaseElement"]


async def test_lookups_are_cached_for_the_ttl(fake: FakeBmc) -> None:
    clock = ManualClock()

    async with started_backend(fake, clock=clock) as backend:
        await backend.apply(event(1))
        await backend.apply(event(2))
        clock.advance(301)
        await backend.apply(event(3))
    assert len([p for p in fake.qualifications if p.form == "BMC.CORE:BMC_BaseElement"]) == 2
    assert fake.cis[0]["CloudId"] == VM_ID


async def test_the_id_attribute_is_configurable(fake: FakeBmc) -> None:
    ci = fake.add_ci("vm-db-01")
    fake.cis[-1]["TokenId"] = OTHER_VM
    await _apply(fake, event(1, target_ids=(OTHER_VM,), configuration_items=()), ci_id_attribute="TokenId")
    assert _bound(fake)["HPD_CI_ReconID"] == ci["ReconciliationIdentity"]
