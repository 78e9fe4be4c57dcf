"""CMDB binding: by Azure resource id, then by name; cached; never injectable; never created unasked."""

from __future__ import annotations

import pytest

from receiver.itsm.servicenow.cmdb import query_safe
from tests.receiver.itsm.servicenow.helpers import SUBSCRIPTION, VM_ID, ManualClock, event, started_backend
from tests.support.itsm_fakes.servicenow import FakeServiceNow

pytestmark = pytest.mark.anyio

DB_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-app/providers/Microsoft.Sql/servers/sql-01"


async def test_binds_the_ci_found_by_resource_id_and_lists_every_ci(fake: FakeServiceNow) -> None:
    fake.insert("cmdb_ci", {"name": "sql-01", "object_id": DB_ID})
    async with started_backend(fake) as backend:
        await backend.apply(event(1, target_ids=(VM_ID, DB_ID), configuration_items=("vm-web-01", "sql-01", "ghost")))
    [incident] = fake.rows("incident")
    assert incident["cmdb_ci"] == fake.rows("cmdb_ci", name="vm-web-01")[0]["sys_id"]
    description = incident["description"]
    assert "vm-web-01 (cmdb_ci_vm_instance" in description and "sql-01 (cmdb_ci" in description
    assert "'ghost': not found in the CMDB" in description


async def test_falls_back_to_the_name_when_no_resource_id_matches(fake: FakeServiceNow) -> None:
    web02 = fake.insert("cmdb_ci", {"name": "vm-web-02"})
    other = VM_ID.replace("vm-web-01", "vm-web-02")
    async with started_backend(fake) as backend:
        await backend.apply(event(1, target_ids=(other,), configuration_items=("vm-web-02",)))
    assert fake.rows("incident")[0]["cmdb_ci"] == web02["sys_id"]


async def test_resource_id_lookup_ignores_case_and_uses_the_configured_field(fake: FakeServiceNow) -> None:
    db = fake.insert("cmdb_ci", {"name": "db", "serial_number": DB_ID.lower()})
    async with started_backend(fake, ci_lookup_field="serial_number") as backend:
        await backend.apply(event(1, target_ids=(DB_ID,), configuration_items=()))
    assert fake.rows("incident")[0]["cmdb_ci"] == db["sys_id"]
    assert all(r.params["sysparm_query"].startswith("serial_number=") for r in fake.table_requests("cmdb_ci"))


async def test_ambiguous_names_bind_nothing(fake: FakeServiceNow) -> None:
    for _ in range(2):
        fake.insert("cmdb_ci", {"name": "twin"})
    async with started_backend(fake) as backend:
        await backend.apply(event(1, target_ids=(), configuration_items=("twin",)))
    [incident] = fake.rows("incident")
    assert incident.get("cmdb_ci", "") == ""
    assert "ambiguous" in incident["description"]


async def test_hits_and_misses_are_cached_until_the_ttl_expires(fake: FakeServiceNow) -> None:
    clock = ManualClock()

    async with started_backend(fake, clock=clock, ci_cache_ttl_seconds=300) as backend:
        await backend.apply(event(1, configuration_items=("vm-web-01", "ghost")))
        await backend.apply(event(2, configuration_items=("vm-web-01", "ghost")))
        assert len(fake.table_requests("cmdb_ci")) == 2  # resource id hit + name miss, then cached
        clock.advance(301)
        await backend.apply(event(3, configuration_items=("vm-web-01", "ghost")))
        assert len(fake.table_requests("cmdb_ci")) == 4


@pytest.mark.parametrize(
    "name",
    [
        "vm^ORname!=x",
        "a^NQsys_id!=0",
        "javascript:gs.getUserID()",
        "JavaScript:gs.sleep(1000)",
        "vm web",
        "vm\nname=x",
        "vm-web-01\n",
        "x" * 300,
    ],
)
async def test_hostile_ci_names_never_reach_a_query(fake: FakeServiceNow, name: str) -> None:
    async with started_backend(fake) as backend:
        await backend.apply(event(1, target_ids=(), configuration_items=(name,)))
    assert not fake.table_requests("cmdb_ci")
    assert fake.scripts_evaluated == []
    for request in fake.requests:
        assert name not in request.params.get("sysparm_query", "")
    [incident] = fake.rows("incident")
    assert incident.get("cmdb_ci", "") == "" and "not looked up" in incident["description"]


async def test_hostile_resource_ids_never_reach_a_query(fake: FakeServiceNow) -> None:
    hostile = VM_ID + "^ORobject_id!=x"
    async with started_backend(fake) as backend:
        await backend.apply(event(1, target_ids=(hostile,), configuration_items=()))
    assert not fake.table_requests("cmdb_ci")
    assert all("object_id!=x" not in r.params.get("sysparm_query", "") for r in fake.requests)
    assert "not looked up" in fake.rows("incident")[0]["description"]


def test_query_safe_accepts_azure_names_and_ids() -> None:
    assert query_safe("vm-web-01") and query_safe(VM_ID) and query_safe("host.contoso.com")
    assert not query_safe("") and not query_safe("a^b") and not query_safe("javascript:x")


async def test_cis_are_never_created_unless_configured(fake: FakeServiceNow) -> None:
    new_id = VM_ID.replace("vm-web-01", "vm-new")
    async with started_backend(fake) as backend:
        await backend.apply(event(1, target_ids=(new_id,), configuration_items=("vm-new",)))
    assert not fake.table_requests("cmdb_ci", "POST")
    async with started_backend(fake, create_cis=True) as backend:
        await backend.apply(event(2, target_ids=(new_id,), configuration_items=("vm-new",)))
    [created] = fake.rows("cmdb_ci", name="vm-new")
    assert created["object_id"] == new_id
    assert fake.rows("incident", cmdb_ci=created["sys_id"])
