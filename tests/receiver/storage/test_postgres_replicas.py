"""Several receiver replicas on one PostgreSQL database: the issue #12 scenario, with real processes.

Two ``secure-export serve`` processes share a database. Deliveries and Azure's retries land on
either; a Fired on one and its Resolved on the other; one replica is SIGKILLed mid-burst and
restarted; the database itself is restarted under load. Afterwards every distinct alert is
exactly one work item, resolved after it was opened (in order), no delivery lost, every number
unique.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.demo.local_issuer import LocalIssuer
from tests.support.postgres import PostgresCluster
from tests.support.replicas import Replica, burst, query, replica_env, wait_until


@pytest.fixture
def replicas(tmp_path: Path, issuer: LocalIssuer, postgres_url: str) -> Iterator[list[Replica]]:
    env = replica_env(issuer, postgres_url)
    pair = [Replica(env, tmp_path, "a"), Replica(env, tmp_path, "b")]
    try:
        for replica in pair:
            replica.start(wait=False)
        for replica in pair:
            replica.wait_ready()
        yield pair
    finally:
        for replica in pair:
            replica.stop()


def _work_items(env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    listing = subprocess.run(
        [sys.executable, "-m", "secure_export.cli", "work-items", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
    )
    assert listing.returncode == 0, listing.stderr
    return json.loads(listing.stdout)


def _assert_exactly_once_in_order(url: str, replicas: list[Replica], alerts: range, cwd: Path) -> None:
    def settled() -> bool:
        return query(url, "SELECT count(*) FROM inbox WHERE state <> 'done'") == [(0,)] and query(
            url, "SELECT count(*) FROM inbox"
        ) == [(2 * len(alerts),)]

    wait_until(
        settled,
        120,
        lambda: (
            f"inbox not settled: {query(url, 'SELECT state, count(*) FROM inbox GROUP BY state')}\n"
            + "\n".join(r.log()[-2000:] for r in replicas)
        ),
    )
    items = _work_items(replicas[0].env, cwd)
    assert len(items) == len(alerts), f"{len(items)} work items for {len(alerts)} alerts"
    numbers = [item["number"] for item in items]
    assert len(set(numbers)) == len(numbers)
    by_alert = {}
    for item in items:
        assert len(item["alert_ids"]) == 1, item
        by_alert[item["alert_ids"][0]] = item
        assert item["state"] == "Resolved", item
        assert item["occurrences"] == 1, item
        # In order: opened by the Fired, then resolved by the Resolved (never "resolved at once").
        assert not any("Resolved at once" in note for note in item["notes"]), item["notes"]
        assert "Opened by Azure Monitor" in item["notes"][0] and "Resolved by Azure Monitor" in item["notes"][-1]
    assert sorted(key.rsplit("-", 1)[-1] for key in by_alert) == sorted(str(n) for n in alerts)
    assert query(url, "SELECT count(*) FROM applied_events") == [(2 * len(alerts),)]
    password = url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
    for replica in replicas:
        assert password not in replica.log(), "the database password appeared in a replica's log"


def test_two_replicas_kill_one_mid_burst_every_alert_exactly_once(
    replicas: list[Replica], issuer: LocalIssuer, postgres_url: str, tmp_path: Path
) -> None:
    statuses: list[int] = []
    alerts = range(1, 161)
    killer_done = threading.Event()

    def kill_and_restart() -> None:
        try:
            time.sleep(1.0)
            replicas[0].kill()
            time.sleep(0.5)
            replicas[0].start()
        finally:
            killer_done.set()

    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    accepted_by = burst(replicas, issuer, alerts, statuses)
    killer.join(90)
    assert killer_done.is_set() and replicas[0].starts == 2
    _assert_exactly_once_in_order(postgres_url, replicas, alerts, tmp_path)
    assert accepted_by == {0, 1}, "both replicas must have accepted deliveries"


def test_database_restart_under_load_loses_nothing(
    replicas: list[Replica], issuer: LocalIssuer, postgres_url: str, postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    statuses: list[int] = []
    alerts = range(1, 121)
    restarted = threading.Event()

    def restart_database() -> None:
        try:
            time.sleep(0.8)
            postgres_cluster.stop("fast")
            time.sleep(1.5)
            postgres_cluster.start()
        finally:
            restarted.set()

    restarter = threading.Thread(target=restart_database)
    restarter.start()
    burst(replicas, issuer, alerts, statuses)
    restarter.join(60)
    assert restarted.is_set()
    assert 503 in statuses, "the database outage was never seen as 503 (restart too early or too late?)"
    _assert_exactly_once_in_order(postgres_url, replicas, alerts, tmp_path)
