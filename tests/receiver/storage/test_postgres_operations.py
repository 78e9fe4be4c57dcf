"""A receiver on PostgreSQL as operators meet it: outages, rotating credentials, replays, bad URLs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from receiver.demo.local_issuer import LocalIssuer
from receiver.settings import SettingsError, load_settings
from receiver.storage.postgres.connect import CachedToken, Database, Token
from receiver.storage.postgres.inbox import PostgresInbox
from tests.support.alerts import alert_body
from tests.support.postgres import PostgresCluster
from tests.support.replicas import Replica, deliver, query, replica_env, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def replica(tmp_path: Path, issuer: LocalIssuer, postgres_url: str) -> Iterator[Replica]:
    one = Replica(replica_env(issuer, postgres_url), tmp_path, "r")
    try:
        yield one.start()
    finally:
        one.stop()


def _post(replica: Replica, issuer: LocalIssuer, n: int, condition: str = "Fired") -> httpx.Response:
    return httpx.post(
        f"{replica.url}/api/alerts",
        content=json.dumps(alert_body(n, condition)).encode(),
        timeout=15,
        headers={"Authorization": f"Bearer {issuer.mint()}", "Content-Type": "application/json"},
    )


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secure_export.cli", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_database_outage_answers_503_with_retry_after_readyz_says_why_and_everything_resumes(
    replica: Replica, issuer: LocalIssuer, postgres_url: str, postgres_cluster: PostgresCluster
) -> None:
    assert _post(replica, issuer, 1).status_code == 202
    postgres_cluster.stop("fast")
    try:
        refused = _post(replica, issuer, 2)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) > 0
        assert refused.json()["error"] == "inbox_unavailable"
        ready = httpx.get(f"{replica.url}/readyz", timeout=15)
        assert ready.status_code == 503
        assert "inbox not writable" in ready.json()["detail"], ready.text
        assert postgres_cluster.password not in ready.text
        # The operators' endpoints say the database is away (503, try again), not that the request is wrong.
        for method, path, body in (
            ("GET", "/ops/trace/some-alert", None),
            ("POST", "/ops/replay", {"all": True}),
            ("POST", "/ops/work-items/INC0000001/resolve", {"note": "restarted the service"}),
        ):
            answer = httpx.request(method, f"{replica.url}{path}", json=body, timeout=15)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.json()["error"] == "unavailable" and "cannot reach the PostgreSQL database" in answer.text
            assert postgres_cluster.password not in answer.text
    finally:
        postgres_cluster.start()
    wait_until(lambda: httpx.get(f"{replica.url}/readyz", timeout=15).status_code == 200, 60, "not ready again")
    deliver([replica], issuer, json.dumps(alert_body(2)).encode())
    wait_until(
        lambda: query(postgres_url, "SELECT count(*) FROM work_items") == [(2,)],
        60,
        lambda: f"work items not created after the outage:\n{replica.log()}",
    )
    assert query(postgres_url, "SELECT state, count(*) FROM inbox GROUP BY state") == [("done", 2)]


@pytest.fixture
async def parked_row(replica: Replica, postgres_url: str, anyio_backend: str) -> int:
    """The id of a row the running replica's database holds as parked (alert 7, Fired)."""
    inbox = PostgresInbox(postgres_url)
    await inbox.open()
    body = alert_body(7)
    result = await inbox.put(body["data"]["essentials"]["alertId"], "Fired", json.dumps(body).encode())
    assert result.row_id is not None
    await inbox.park(result.row_id, 3, "permanent backend error: refused")
    await inbox.close()
    return result.row_id


def test_a_parked_row_replayed_with_the_cli_reaches_the_dispatching_replica(
    replica: Replica, postgres_url: str, parked_row: int
) -> None:
    row_id = parked_row
    env = {**replica.env}
    parked = json.loads(_cli(env, "work-items", "--failed", "--json").stdout)
    assert [row["id"] for row in parked] == [row_id]
    replayed = _cli(env, "replay", "--id", str(row_id), "--by", "alice", "--json")
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout) == {"changed": [row_id], "skipped": []}
    wait_until(
        lambda: query(postgres_url, "SELECT count(*) FROM work_items") == [(1,)],
        30,
        lambda: f"the replayed row was not dispatched:\n{replica.log()}",
    )
    traced = json.loads(_cli(env, "trace", str(alert_body(7)["data"]["essentials"]["alertId"]), "--json").stdout)
    [delivery] = traced["deliveries"]
    assert (delivery["state"], delivery["replayed_by"], delivery["work_item"]) == ("done", "alice", "INC0000001")
    by_hand = _cli(env, "work-items", "resolve", "INC0000001", "--note", "fixed", "--by", "bob")
    assert by_hand.returncode == 0, by_hand.stderr
    assert query(postgres_url, "SELECT state FROM work_items WHERE number = 'INC0000001'") == [("Resolved",)]
    twice = _cli(env, "work-items", "resolve", "INC0000001", "--note", "again")
    assert twice.returncode == 1 and "only a New work item can be resolved" in twice.stderr, twice.stderr
    closed = _cli(env, "work-items", "close", "INC0000001", "--note", "done", "--by", "bob")
    assert closed.returncode == 0, closed.stderr
    [item] = json.loads(_cli(env, "work-items", "--json").stdout)
    assert item["state"] == "Closed"
    assert [note.split(" ", 1)[1] for note in item["notes"][-2:]] == ["Resolved by bob: fixed", "Closed by bob: done"]
    missing = _cli(env, "work-items", "close", "INC0000099", "--note", "x")
    assert missing.returncode == 1 and "no work item INC0000099" in missing.stderr, missing.stderr
    again = _cli(env, "discard", "--id", str(row_id), "--reason", "x", "--json")
    assert again.returncode == 1 and json.loads(again.stdout)["skipped"] == [
        {"id": row_id, "reason": "it is done, not parked"}
    ]


async def test_rotating_tokens_new_connections_use_a_fresh_one_before_the_old_expires(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    """The Entra token logic against the real server; a changing password stands in for the tokens."""
    original = postgres_cluster.password
    now = [1_000_000.0]
    issued: list[str] = []

    async def source() -> Token:
        issued.append(postgres_cluster.password)
        return Token(postgres_cluster.password, now[0] + 3600)

    url = postgres_cluster.url(postgres_url.rsplit("/", 1)[1], password=False)

    try:
        database = Database(url, token_source=source, clock=lambda: now[0])
        assert isinstance(database.password, CachedToken)
        for _ in range(2):
            conn = await database.connect()
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
        assert issued == [original]  # cached: one token for both connections
        postgres_cluster.set_password("rotated-" + original)
        now[0] += 3600 - 299  # inside the refresh margin: the cached token counts as expiring
        conn = await database.connect()
        assert await conn.fetchval("SELECT current_user") == "secure_export_test"
        await conn.close()
        assert issued == [original, "rotated-" + original]
        pool = await database.create_pool(min_size=2, max_size=2)
        assert await pool.fetchval("SELECT 2") == 2
        await pool.close()
    finally:
        postgres_cluster.set_password(original)


async def test_password_from_pgpassword_and_tls_required(
    postgres_cluster: PostgresCluster, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_name = postgres_url.rsplit("/", 1)[1]
    monkeypatch.setenv("PGPASSWORD", postgres_cluster.password)

    conn = await Database(postgres_cluster.url(database_name, password=False)).connect()
    assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
    await conn.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://u:s3cret@db.example/app?sslmode=disable",
            "sslmode=disable in the PostgreSQL URL is not allowed: TLS is required",
        ),
        ("postgresql://u:s3cret@db.example/app?sslmode=prefer", "sslmode=prefer in the PostgreSQL URL is not allowed"),
        ("postgresql://u:s3cret@db.example", "names no database"),
        ("postgresql://db.example/app", "names no user"),
        ("mysql://u:s3cret@db.example/app", "mysql:// is not supported"),
    ],
)
def test_bad_database_urls_are_refused_naming_the_variable_without_the_password(url: str, message: str) -> None:
    base = {"SECURE_EXPORT_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47", "SECURE_EXPORT_AUDIENCES": "api://x"}
    with pytest.raises(SettingsError) as caught:
        load_settings({**base, "SECURE_EXPORT_DB": url})
    text = str(caught.value)
    assert "SECURE_EXPORT_DB:" in text and message in text, text
    assert "s3cret" not in text


def test_db_auth_is_validated() -> None:
    base = {
        "SECURE_EXPORT_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "SECURE_EXPORT_AUDIENCES": "api://x",
        "SECURE_EXPORT_DB": "postgresql://app@db.example/alerts",
    }
    assert load_settings({**base, "SECURE_EXPORT_DB_AUTH": "Entra"}).db_auth == "entra"
    with pytest.raises(SettingsError, match="SECURE_EXPORT_DB_AUTH"):
        load_settings({**base, "SECURE_EXPORT_DB_AUTH": "token"})


def test_work_items_on_an_unreachable_database_says_so_without_the_password() -> None:
    from tests.support.postgres import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_EXPORT_")}
    url = f"postgresql://u:s3cret@127.0.0.1:{free_port()}/app"
    result = _cli(env, "work-items", "--db", url)
    assert result.returncode == 1
    assert "cannot read the PostgreSQL database" in result.stderr and "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr
    started = time.monotonic()
    traced = _cli(env, "trace", "x", "--db", url)
    assert traced.returncode == 1 and "s3cret" not in traced.stderr and "Traceback" not in traced.stderr
    assert time.monotonic() - started < 30


async def test_a_commit_on_one_replica_wakes_the_other_at_once(postgres_url: str) -> None:
    first, second = PostgresInbox(postgres_url), PostgresInbox(postgres_url)
    await first.open()
    await second.open()
    woken: asyncio.Queue[str] = asyncio.Queue()
    first.set_on_remote_commit(woken.put_nowait)
    await asyncio.sleep(0.3)  # the listener subscribed
    while not woken.empty():
        woken.get_nowait()  # the wake-up after (re)connecting
    result = await second.put("a", "Fired", b"{}")
    payload = await asyncio.wait_for(woken.get(), timeout=5)
    assert payload == f"{second.replica}:{result.row_id}"
    own: asyncio.Queue[str] = asyncio.Queue()
    second.set_on_remote_commit(own.put_nowait)
    await asyncio.sleep(0.3)
    while not own.empty():
        own.get_nowait()
    await second.put("b", "Fired", b"{}")
    await asyncio.sleep(0.5)
    assert own.empty()  # a replica is not woken by its own commits (it hands the rows over itself)
    await first.close()
    await second.close()
