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
from receiver.itsm.embedded.postgres import EmbeddedPostgresBackend
from receiver.itsm.embedded.queries import list_configuration_items, list_work_items
from receiver.itsm.embedded.store import EmbeddedBackend
from secure_export.routing import RouteDecision
from tests.receiver.itsm.embedded.test_embedded import fired, resolved

_NOTE_TIME = re.compile(r"^\S+ ")
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
}


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
