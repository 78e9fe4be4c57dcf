"""The embedded backend on PostgreSQL does what it does on SQLite: the same events, the same work items.

Each scenario is applied to both stores (SQLite file, real PostgreSQL server) and the listings
are compared field by field (only the wall-clock times of notes differ), so the PostgreSQL
port cannot drift from the semantics docs/work-items.md describes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from receiver.alerts.events import AlertEvent
from receiver.itsm.base import Backend
from receiver.itsm.embedded.operations import close_work_item
from receiver.itsm.embedded.postgres import EmbeddedPostgresBackend
from receiver.itsm.embedded.queries import list_configuration_items, list_work_items
from receiver.itsm.embedded.store import EmbeddedBackend
from secure_export.routing import RouteDecision
from tests.receiver.itsm.embedded.test_embedded import fired, resolved

_NOTE_TIME = re.compile(r"^\S+ ")
_LK = "cpu-high|vm-web-01"
"""The rule-and-targets key of the lifecycle scenarios."""
_ROUTE = RouteDecision(
    rule="routes[0]", assignment_group="Shop On-Call", category="Hardware", subcategory="CPU", impact=1, urgency=2
)

SCENARIOS: dict[str, list[AlertEvent]] = {
    "fired then resolved": [fired("a1"), resolved("a1")],
    "grouped by rule and target": [
        fired("a1", key="rule|vm"),
        fired("a2", key="rule|vm", minutes=1),
        fired("a3", key="rule|vm", minutes=2),
        resolved("a1", key="rule|vm"),
        resolved("a2", key="rule|vm", minutes=11),
    ],
    "resolved before fired": [resolved("late"), fired("late"), fired("b"), resolved("b")],
    "replays change nothing": [fired("a1"), fired("a1"), resolved("a1"), resolved("a1"), fired("a1")],
    "a new item after the group resolved": [
        fired("a1", key="k"),
        resolved("a1", key="k"),
        fired("a2", key="k", minutes=20),
        fired("a3", key="k", minutes=21),
    ],
    "configuration items": [
        fired("c1", configuration_items=("vm-web-01", "VM-WEB-01", "db-01")),
        fired("c2", configuration_items=("db-01",), minutes=-30),
    ],
    # The routed fields (issue #13) and the priority from the route's impact and urgency.
    "routed": [fired("r1", route=_ROUTE), fired("r2", route=RouteDecision(category="Network")), resolved("r1")],
    # The lifecycle rules (issue #13), each alert with its own correlation key ("alert" mode) and
    # one rule-and-targets key: items are found again by it.
    "reopened within the window": [
        fired("w1", lifecycle_key=_LK),
        resolved("w1", lifecycle_key=_LK, minutes=10),
        fired("w2", lifecycle_key=_LK, minutes=40),
        resolved("w2", lifecycle_key=_LK, minutes=50),
        fired("w3", lifecycle_key=_LK, minutes=60),
    ],
    "a new item after the window": [
        fired("w1", lifecycle_key=_LK),
        resolved("w1", lifecycle_key=_LK, minutes=10),
        fired("w2", lifecycle_key=_LK, minutes=71),
    ],
    "flapping held open, then the quiet period resolves it": [
        fired("f1", lifecycle_key=_LK),
        resolved("f1", lifecycle_key=_LK, minutes=1, hold="Flapping: 3 fire/resolve cycles; held open."),
        fired("f2", lifecycle_key=_LK, minutes=2),
        resolved("f2", lifecycle_key=_LK, minutes=3, hold="Flapping: 4 fire/resolve cycles; held open."),
        resolved(
            "quiet-f2",
            key=fired("f2").correlation_key,
            minutes=30,
            lifecycle_reason="flap-quiet",
            lifecycle_note="Resolved by secure-export: no Fired for 20min after flapping.",
        ),
    ],
    "stateless TTL resolves the whole item": [
        fired("t1", key="rule|vm", lifecycle_key="rule|vm"),
        fired("t2", key="rule|vm", lifecycle_key="rule|vm", minutes=5),
        resolved("ttl-1", key="rule|vm", minutes=65, lifecycle_reason="stateless-ttl", lifecycle_note="TTL passed."),
        resolved("ttl-2", key="rule|vm", minutes=66, lifecycle_reason="stateless-ttl", lifecycle_note="TTL passed."),
    ],
    "resource health recovery": [
        fired("h1", lifecycle_key=_LK),
        fired("h2", lifecycle_key=_LK, minutes=20, recovery=True),
        fired("h3", lifecycle_key=_LK, minutes=30, recovery=True),
        fired("h4", lifecycle_key=_LK, minutes=40),
    ],
}

EXPECTED: dict[str, list[tuple[str, int, int]]] = {
    "reopened within the window": [("New", 2, 3)],
    "a new item after the window": [("Resolved", 0, 1), ("New", 0, 1)],
    "flapping held open, then the quiet period resolves it": [("Resolved", 0, 2)],
    "stateless TTL resolves the whole item": [("Resolved", 0, 2)],
    "resource health recovery": [("New", 1, 2)],
}
"""(state, reopened, occurrences) of each item a lifecycle scenario leaves, on either store."""


def _apply(backend: Backend, events: Sequence[AlertEvent]) -> list[str | None]:
    async def run() -> list[str | None]:
        await backend.start()
        try:
            refs = [await backend.apply(event) for event in events]
        finally:
            await backend.close()
        return [ref.number if ref is not None else None for ref in refs]

    return asyncio.run(run())


def _comparable(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**item, "notes": [_NOTE_TIME.sub("", note, count=1) for note in item["notes"]]} for item in items]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_postgres_backend_matches_sqlite(name: str, tmp_path: Path, postgres_url: str) -> None:
    events = SCENARIOS[name]
    sqlite_db = str(tmp_path / "embedded.db")
    sqlite_refs = _apply(EmbeddedBackend(sqlite_db), events)
    postgres_refs = _apply(EmbeddedPostgresBackend(postgres_url), events)
    assert postgres_refs == sqlite_refs
    assert _comparable(list_work_items(postgres_url)) == _comparable(list_work_items(sqlite_db))
    assert list_configuration_items(postgres_url) == list_configuration_items(sqlite_db)
    assert list_work_items(postgres_url)  # every scenario leaves work items to compare
    if name == "routed":
        first = list_work_items(postgres_url)[0]
        assert (first["assignment_group"], first["impact"], first["urgency"]) == ("Shop On-Call", 1, 2)
    if name in EXPECTED:
        listed = list_work_items(postgres_url)
        assert [(i["state"], i["reopened"], i["occurrences"]) for i in listed] == EXPECTED[name]
        notes = [note for item in listed for note in item["notes"]]
        wanted = {
            "reopened within the window": "30min after Azure resolved this item",
            "flapping held open, then the quiet period resolves it": "no Fired for 20min after flapping",
            "stateless TTL resolves the whole item": "TTL passed.",
            "resource health recovery": "reports vm-web-01 Available again",
        }.get(name)
        assert wanted is None or any(wanted in note for note in notes)


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_an_item_a_person_closed_is_never_reopened(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    db = str(tmp_path / "embedded.db") if store == "sqlite" else str(request.getfixturevalue("postgres_url"))

    def backend() -> Backend:
        return EmbeddedBackend(db) if store == "sqlite" else EmbeddedPostgresBackend(db)

    assert _apply(backend(), [fired("p1", lifecycle_key=_LK), resolved("p1", lifecycle_key=_LK)]) == ["INC0000001"] * 2
    close_work_item(db, "INC0000001", action="close", note="fixed for good", by="alice")
    assert _apply(backend(), [fired("p2", lifecycle_key=_LK, minutes=15)]) == ["INC0000002"]
    old, new = list_work_items(db)
    assert (old["state"], old["reopened"], new["state"], new["reopened"]) == ("Closed", 0, "New", 0)
    assert any("Follows INC0000001, which a person closed" in note for note in new["notes"])


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
@pytest.mark.parametrize(
    ("window", "later", "numbers"),
    [
        (1800.0, 40, ["INC0000001", "INC0000001", "INC0000001"]),  # 30min after the Resolved: within
        (1800.0, 41, ["INC0000001", "INC0000001", "INC0000002"]),  # 31min: past the window
        (0.0, 11, ["INC0000001", "INC0000001", "INC0000002"]),  # a window of 0 never reopens
    ],
)
def test_the_reopen_window_is_the_configured_one(
    store: str, window: float, later: int, numbers: list[str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = str(tmp_path / "embedded.db") if store == "sqlite" else str(request.getfixturevalue("postgres_url"))
    backend: Backend = (
        EmbeddedBackend(db, reopen_window=window)
        if store == "sqlite"
        else EmbeddedPostgresBackend(db, reopen_window=window)
    )
    events = [
        fired("w1", lifecycle_key=_LK),
        resolved("w1", lifecycle_key=_LK),
        fired("w2", lifecycle_key=_LK, minutes=later),
    ]
    assert _apply(backend, events) == numbers
    assert [i["reopened"] for i in list_work_items(db)] == ([1] if len(set(numbers)) == 1 else [0, 0])
