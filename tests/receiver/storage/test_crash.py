"""SIGKILL right after a burst of 202s, restart on the same database: nothing lost, nothing twice.

The receiver runs as a real subprocess (``python -m tests.support.receivers``); SIGKILL gives it no
chance to run any shutdown code, so whatever survives is what was committed before each ``202``.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from receiver.alerts.events import event_from_body
from receiver.demo.local_issuer import LocalIssuer
from receiver.itsm.embedded.queries import list_work_items
from tests.support.alerts import alert_body
from tests.support.backends import DurableFakeBackend, read_durable_fake
from tests.support.receivers import start_receiver

pytestmark = pytest.mark.anyio

BURST = 200


def _deliveries() -> list[dict]:
    """BURST deliveries: every alert fires; every fourth one also resolves; some are repeated."""
    bodies = []
    for n in range(BURST * 3 // 4):
        bodies.append(alert_body(f"crash-{n}", "Fired"))
        if n % 4 == 0:
            bodies.append(alert_body(f"crash-{n}", "Resolved"))
    bodies += [alert_body(f"crash-{n}", "Fired") for n in range(0, BURST - len(bodies))]  # repeats
    return bodies


async def _burst(url: str, token: str, bodies: list[dict]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        return await asyncio.gather(
            *(client.post("/api/alerts", content=json.dumps(body), headers=headers) for body in bodies)
        )


def _accepted(responses: list[httpx.Response]) -> set[tuple[str, str]]:
    assert [r.status_code for r in responses] == [202] * len(responses), {r.status_code for r in responses}
    return {(r.json()["alertId"], r.json()["monitorCondition"]) for r in responses}


async def test_sigkill_after_burst_embedded_backend(tmp_path: Path, issuer: LocalIssuer) -> None:
    db = str(tmp_path / "crash.db")
    bodies = _deliveries()
    rx = start_receiver(tmp_path, issuer, subprocess=True, db=db)
    try:
        accepted = _accepted(await _burst(rx.url, issuer.mint(), bodies))
    finally:
        rx.kill()
    # Every 202 was on disk before it was sent.
    conn_counts = rx.inbox_counts()
    assert conn_counts["pending"] + conn_counts["done"] == len(accepted)

    restarted = start_receiver(tmp_path, issuer, subprocess=True, db=db)
    try:
        restarted.wait_dispatched(timeout=60)
    finally:
        assert restarted.stop() == 0
    items = list_work_items(db)
    per_alert = Counter(alert for item in items for alert in item["alert_ids"])
    fired = {alert for alert, condition in accepted if condition == "Fired"}
    resolved = {alert for alert, condition in accepted if condition == "Resolved"}
    assert set(per_alert) == fired
    assert all(count == 1 for count in per_alert.values()), "an alert produced two work items"
    assert len(items) == len(fired)
    for item in items:
        expected = "Resolved" if item["alert_ids"][0] in resolved else "New"
        assert item["state"] == expected, item["alert_ids"]


async def test_sigkill_after_burst_durable_fake_backend(tmp_path: Path, issuer: LocalIssuer) -> None:
    db = str(tmp_path / "crash-fake.db")
    bodies = _deliveries()
    factory = "tests.support.backends:durable_fake"
    rx = start_receiver(tmp_path, issuer, subprocess=True, db=db, backend=factory)
    try:
        accepted = _accepted(await _burst(rx.url, issuer.mint(), bodies))
    finally:
        rx.kill()
    restarted = start_receiver(tmp_path, issuer, subprocess=True, db=db, backend=factory)
    try:
        restarted.wait_dispatched(timeout=60)
        # A second burst of the same deliveries after the restart: all duplicates, nothing new.
        again = await _burst(restarted.url, issuer.mint(), bodies[:50])
        assert all(r.status_code == 202 and r.json()["duplicate"] for r in again)
        restarted.wait_dispatched(timeout=60)
    finally:
        assert restarted.stop() == 0
    calls, effects = read_durable_fake(db)
    assert Counter(effects) == Counter(accepted)  # each accepted delivery applied, exactly once
    # Calls may exceed effects only by replays of rows applied just before the kill.
    assert set(calls) == accepted


async def test_durable_fake_backend_takes_concurrent_applies(tmp_path: Path) -> None:
    """The dispatcher calls ``apply`` from several workers at once; each must succeed the first time.

    The fake's one SQLite connection used to be shared by concurrent ``asyncio.to_thread`` calls:
    a second ``BEGIN IMMEDIATE`` on it failed ("cannot start a transaction within a transaction"),
    and a thread holding the GIL could wait for that connection's mutex while another waited out
    the 10 s busy timeout, stalling the whole receiver (a 503 in the burst above, under load).
    """
    db = str(tmp_path / "fake.db")
    events = [
        event_from_body(json.dumps(body).encode(), "alert")
        for n in range(40)
        for body in (alert_body(f"concurrent-{n}", "Fired"), alert_body(f"concurrent-{n}", "Resolved"))
    ]

    backend = DurableFakeBackend(db)
    await backend.start()
    try:
        outcomes = await asyncio.gather(*(backend.apply(e) for e in events), return_exceptions=True)
    finally:
        await backend.close()

    assert [o for o in outcomes if o is not None] == []
    calls, effects = read_durable_fake(db)
    assert len(calls) == len(effects) == len(set(effects)) == 80
