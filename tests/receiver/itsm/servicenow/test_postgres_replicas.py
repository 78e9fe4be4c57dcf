"""Two receiver replicas on one PostgreSQL database with ServiceNow as the backend: exactly once.

The same scenario as tests/receiver/test_postgres_replicas.py (deliveries and Azure's retries on
either replica, Fired on one and Resolved on the other, the dispatching replica SIGKILLed
mid-burst and restarted), against the local ServiceNow: every distinct alert is one incident,
resolved, none lost, none duplicated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.demo.local_issuer import LocalIssuer
from receiver.itsm.markers import correlation_id
from tests.receiver.itsm.servicenow.helpers import PASSWORD, USER
from tests.support.alerts import alert_body
from tests.support.itsm_fakes.servicenow import FakeServiceNow
from tests.support.replicas import Replica, query, replica_env, wait_until
from tests.support.replicas import burst as _burst


@pytest.fixture
def local_issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as issuer:
        yield issuer


def test_two_replicas_on_servicenow_kill_the_dispatcher_mid_burst_one_incident_each(
    tmp_path: Path, local_issuer: LocalIssuer, fake: FakeServiceNow, postgres_url: str
) -> None:
    env = replica_env(
        local_issuer,
        postgres_url,
        SECURE_EXPORT_ITSM="servicenow",
        SECURE_EXPORT_SERVICENOW_URL=fake.url,
        SECURE_EXPORT_SERVICENOW_USERNAME=USER,
        SECURE_EXPORT_SERVICENOW_PASSWORD=PASSWORD,
        # Sixty instances of one rule on one VM, applied in any order: within the reopen window a late
        # Fired rightly reopens an earlier instance's resolved incident. This test counts one incident
        # per instance, so the window is off (reopening: tests/receiver/itsm/servicenow/test_lifecycle.py).
        SECURE_EXPORT_REOPEN_WINDOW="0",
    )
    pair = [Replica(env, tmp_path, "a"), Replica(env, tmp_path, "b")]
    alerts = range(1, 61)
    try:
        pair[0].start()  # takes the dispatch lease first
        pair[1].start()

        def kill_and_restart() -> None:
            time.sleep(1.0)
            pair[0].kill()
            time.sleep(0.5)
            pair[0].start()

        killer = threading.Thread(target=kill_and_restart)
        killer.start()
        accepted_by = _burst(pair, local_issuer, alerts, [])
        killer.join(90)
        assert accepted_by == {0, 1}
        wait_until(
            lambda: (
                query(postgres_url, "SELECT count(*) FROM inbox WHERE state <> 'done'") == [(0,)]
                and query(postgres_url, "SELECT count(*) FROM inbox") == [(2 * len(alerts),)]
            ),
            120,
            lambda: "\n".join(r.log()[-3000:] for r in pair),
        )
        for n in alerts:
            alert_id = alert_body(n)["data"]["essentials"]["alertId"]
            incidents = fake.rows("incident", correlation_id=correlation_id(alert_id))
            assert len(incidents) == 1, (n, incidents)
            assert incidents[0]["state"] == "6", (n, incidents[0]["state"])  # Resolved
    finally:
        for replica in pair:
            replica.stop()
