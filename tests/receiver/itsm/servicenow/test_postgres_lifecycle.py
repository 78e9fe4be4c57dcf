"""The lifecycle rules with two receiver replicas on one PostgreSQL database and ServiceNow.

The replica holding the dispatch lease observes events and sweeps the timers; the state is in the
database, so when the holder is SIGKILLed the next holder keeps the stateless TTL's clock and the
flap count: the incident is resolved once, by the receiver, after the TTL; a flapping incident is
held open across the handover and resolves after the quiet period.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.demo.local_issuer import LocalIssuer
from tests.receiver.itsm.servicenow.helpers import PASSWORD, USER
from tests.support.alerts import alert_body
from tests.support.itsm_fakes.servicenow import FakeServiceNow
from tests.support.replicas import Replica, deliver, query, replica_env, wait_until

LEASE_TAKEN = '"dispatch_lease_taken"'
SWEEPING = '"lifecycle_sweeping"'


@pytest.fixture
def local_issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as issuer:
        yield issuer


def _pair(tmp_path: Path, issuer: LocalIssuer, fake: FakeServiceNow, url: str, **extra: str) -> list[Replica]:
    env = replica_env(
        issuer,
        url,
        SECURE_EXPORT_ITSM="servicenow",
        SECURE_EXPORT_SERVICENOW_URL=fake.url,
        SECURE_EXPORT_SERVICENOW_USERNAME=USER,
        SECURE_EXPORT_SERVICENOW_PASSWORD=PASSWORD,
        SECURE_EXPORT_LIFECYCLE_SWEEP_SECONDS="0.2",
        **extra,
    )
    return [Replica(env, tmp_path, "a"), Replica(env, tmp_path, "b")]


def _holder(pair: list[Replica]) -> int:
    """The index of the replica that took the dispatch lease (its log says so)."""
    wait_until(lambda: any(LEASE_TAKEN in r.log() for r in pair), 30, "no replica took the dispatch lease")
    [index] = [i for i, replica in enumerate(pair) if LEASE_TAKEN in replica.log()]
    return index


def _settled(url: str, rows: int) -> bool:
    """Nothing pending and at least ``rows`` rows (a quiet period may have added the receiver's own)."""
    [(stored,)] = query(url, "SELECT count(*) FROM inbox")
    return query(url, "SELECT count(*) FROM inbox WHERE state <> 'done'") == [(0,)] and stored >= rows


def _body(n: int, condition: str = "Fired", **essentials: Any) -> bytes:
    document = alert_body(n, condition)
    document["data"]["essentials"].update(essentials)
    return json.dumps(document).encode()


def test_a_stateless_ttl_survives_killing_the_lease_holder_and_resolves_once(
    tmp_path: Path, local_issuer: LocalIssuer, fake: FakeServiceNow, postgres_url: str
) -> None:
    ttl = 6.0
    pair = _pair(tmp_path, local_issuer, fake, postgres_url, SECURE_EXPORT_STATELESS_TTL=str(ttl))
    try:
        pair[0].start()
        pair[1].start()
        holder = _holder(pair)
        standby = 1 - holder
        body = _body(1, monitoringService="Activity Log - Administrative")
        deliver(pair, local_issuer, body, first=standby)  # accepted by the standby, applied by the holder
        started = time.monotonic()
        wait_until(lambda: len(fake.rows("incident")) == 1, 30, lambda: pair[holder].log())
        wait_until(lambda: query(postgres_url, "SELECT count(*) FROM lifecycle_timers") == [(1,)], 10, "no timer")
        # Only the lease holder sweeps the timers (docs/postgresql.md, "Lifecycle rules").
        assert SWEEPING in pair[holder].log() and SWEEPING not in pair[standby].log()
        pair[holder].kill()  # mid-TTL: the clock is in the database, not in the killed process
        assert fake.rows("incident")[0]["state"] == "1"
        wait_until(lambda: LEASE_TAKEN in pair[standby].log(), 30, lambda: pair[standby].log())
        wait_until(lambda: SWEEPING in pair[standby].log(), 10, "the new lease holder does not sweep")
        pair[holder].start()  # back as the standby
        wait_until(lambda: fake.rows("incident")[0]["state"] == "6", 60, lambda: pair[standby].log())
        assert time.monotonic() - started >= ttl - 0.5
        wait_until(lambda: _settled(postgres_url, 2), 30, "the receiver's Resolved was not applied")
        time.sleep(1.0)  # a second sweep on either replica would store a second row now
        assert query(postgres_url, "SELECT count(*) FROM inbox WHERE alert_id LIKE 'secure-export-lifecycle/%'") == [
            (1,)
        ]
        assert query(postgres_url, "SELECT count(*) FROM lifecycle_timers") == [(0,)]
        [incident] = fake.rows("incident")
        assert "no repeat of this alert for 6s (SECURE_EXPORT_STATELESS_TTL)" in incident["close_notes"]
    finally:
        for replica in pair:
            replica.stop()


def test_flap_damping_holds_the_incident_across_a_lease_handover(
    tmp_path: Path, local_issuer: LocalIssuer, fake: FakeServiceNow, postgres_url: str
) -> None:
    pair = _pair(
        tmp_path,
        local_issuer,
        fake,
        postgres_url,
        SECURE_EXPORT_CORRELATION="rule-target",
        SECURE_EXPORT_FLAP_CYCLES="2",
        SECURE_EXPORT_FLAP_QUIET="5",
    )
    delivered = 0

    def cycle(n: int, first: int) -> None:
        nonlocal delivered
        minute = 2 * n
        fired = f"2026-11-26T06:{minute:02d}:00Z"
        resolved = f"2026-11-26T06:{minute + 1:02d}:00Z"
        # Fired on one replica, Resolved on the other, each applied before the next arrives.
        deliver(pair, local_issuer, _body(n, firedDateTime=fired), first=first)
        deliver(
            pair, local_issuer, _body(n, "Resolved", firedDateTime=fired, resolvedDateTime=resolved), first=first + 1
        )
        delivered += 2
        wait_until(lambda: _settled(postgres_url, delivered), 60, lambda: "\n".join(r.log() for r in pair))

    try:
        pair[0].start()
        pair[1].start()
        holder = _holder(pair)
        cycle(1, holder)
        cycle(2, 1 - holder)
        assert {row["state"] for row in fake.rows("incident")} == {"6"}  # two cycles: not more than 2
        pair[holder].kill()
        standby = 1 - holder
        wait_until(lambda: LEASE_TAKEN in pair[standby].log(), 30, lambda: pair[standby].log())
        pair[holder].start()
        cycle(3, holder)  # the third cycle, observed by the new holder: held open
        open_incidents = [row for row in fake.rows("incident") if row["state"] != "6"]
        assert len(open_incidents) == 1, fake.rows("incident")
        [held] = open_incidents
        assert any(note.startswith("Flapping: 3 fire/resolve cycles") for note in fake.journal(held["sys_id"]))
        wait_until(
            lambda: fake.rows("incident", sys_id=held["sys_id"])[0]["state"] == "6",
            30,
            lambda: pair[standby].log(),
        )
        [resolved] = fake.rows("incident", sys_id=held["sys_id"])
        assert "no Fired for 5s after flapping" in resolved["close_notes"]
        assert query(postgres_url, "SELECT count(*) FROM inbox WHERE alert_id LIKE 'secure-export-lifecycle/%'") == [
            (1,)
        ]
    finally:
        for replica in pair:
            replica.stop()
