"""Operators' commands over the real SQLite store: trace, replay, discard, work-items resolve/close.

Also the ops port (in process, over loopback), retention of discarded rows and resolved work
items, the upgrade of a database written by the first schema, and the small things (--version,
config errors in one pass, "did you mean").
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from receiver.cli.commands import main
from receiver.demo.local_issuer import LocalIssuer
from receiver.itsm.embedded.queries import list_work_items
from receiver.itsm.embedded.store import EmbeddedBackend
from receiver.storage.operations import discard, replay, trace
from receiver.storage.sqlite.inbox import Inbox, count_by_state
from tests.receiver.itsm.embedded.test_embedded import apply_all, fired, resolved
from tests.support.alerts import alert_body
from tests.support.paths import REPO_ROOT
from tests.support.receivers import start_receiver
from tests.support.serve_log import ServeLog

pytestmark = pytest.mark.anyio


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secure_export.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd or REPO_ROOT,
    )


def _clean_env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_EXPORT_")}
    env.update(values)
    return env


async def _park(path: Path, *alert_numbers: int) -> list[int]:
    """One parked Fired delivery per number in the inbox at ``path`` (as a refusing backend leaves them)."""
    inbox = Inbox(str(path))
    await inbox.open()
    ids = []
    for n in alert_numbers:
        body = alert_body(n)
        result = await inbox.put(body["data"]["essentials"]["alertId"], "Fired", json.dumps(body).encode())
        assert result.row_id is not None
        await inbox.park(result.row_id, 3, "permanent backend error: refused")
        ids.append(result.row_id)
    await inbox.close()
    return ids


def _parked_db(path: Path, *alert_numbers: int) -> list[int]:
    """:func:`_park` for the tests that stay synchronous: they drive the CLI in child processes."""
    return asyncio.run(_park(path, *alert_numbers))


def _alert_id(n: int) -> str:
    return str(alert_body(n)["data"]["essentials"]["alertId"])


# --- trace / replay / discard over the store ------------------------------------------------


def test_trace_json_has_the_design_shape_and_names_the_embedded_work_item(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    [row_id] = _parked_db(db, 1)
    document = trace(str(db), _alert_id(1))
    assert set(document) == {"alert_id", "deliveries", "work_items"}
    [delivery] = document["deliveries"]
    assert set(delivery) == {"id", "condition", "state", "attempts", "last_error", "received_at"}  # exactly
    assert {k: delivery[k] for k in ("id", "condition", "state", "attempts", "last_error")} == {
        "id": row_id,
        "condition": "Fired",
        "state": "parked",
        "attempts": 3,
        "last_error": "permanent backend error: refused",
    }
    assert delivery["received_at"].endswith("Z") and document["work_items"] == []

    apply_all(db, [fired("a1"), resolved("a1")])
    embedded = trace(str(db), fired("a1").alert_id)
    assert embedded["deliveries"] == [] and embedded["work_items"] == [{"number": "INC0000001", "url": None}]


def test_trace_of_an_unknown_alert_exits_1_and_says_where_to_look(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    _parked_db(db, 1)
    assert main("trace", ["nope", "--db", str(db)]) == 1
    out = capsys.readouterr().out
    assert "Deliveries (0)" in out and "never stored it" in out


def test_replay_and_discard_change_only_parked_rows_and_keep_who_and_why(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    first, second, third = _parked_db(db, 1, 2, 3)
    result = discard(str(db), [second, 999], reason="  duplicate of   INC0000042 ", by="alice")
    assert result.changed == [second] and result.skipped == {999: "no such delivery"}
    again = replay(str(db), [second, first], by="bob")
    assert again.changed == [first] and again.skipped == {second: "it is discarded, not parked"}
    assert count_by_state(str(db)) == {"pending": 1, "done": 0, "parked": 1, "discarded": 1}
    [discarded] = trace(str(db), _alert_id(2), details=True)["deliveries"]
    assert (discarded["state"], discarded["discarded_by"], discarded["discard_reason"]) == (
        "discarded",
        "alice",
        "duplicate of INC0000042",
    )
    [replayed] = trace(str(db), _alert_id(1), details=True)["deliveries"]
    assert (replayed["state"], replayed["attempts"], replayed["replays"], replayed["replayed_by"]) == (
        "pending",
        0,
        1,
        "bob",
    )
    assert replay(str(db), None).changed == [third]  # --all: every parked row, here the one left


def test_cli_replay_discard_usage_and_exit_statuses(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    first, second = _parked_db(db, 1, 2)
    no_reason = _cli("discard", "--id", str(first), "--db", str(db))
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    neither = _cli("replay", "--db", str(db))
    assert neither.returncode == 2 and "--id" in neither.stderr
    both = _cli("replay", "--all", "--id", "1", "--db", str(db))
    assert both.returncode == 2
    done = _cli("discard", "--id", str(first), "--reason", "test alert", "--db", str(db), "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"changed": [first], "skipped": []}
    mixed = _cli("replay", "--id", str(first), str(second), "--db", str(db))
    assert mixed.returncode == 1
    assert "Replayed 1 delivery" in mixed.stdout and f"delivery {first} not changed: it is discarded" in mixed.stderr
    missing = _cli("replay", "--all", "--db", str(tmp_path / "absent.db"))
    assert missing.returncode == 1 and "no database at" in missing.stderr
    assert not (tmp_path / "absent.db").exists()


def test_replay_of_a_row_parked_in_an_earlier_run_reaches_the_running_serve(
    tmp_path: Path, issuer: LocalIssuer
) -> None:
    db = tmp_path / "secure-export.db"
    [row_id] = _parked_db(db, 5)
    env = _clean_env(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES=issuer.audience,
        SECURE_EXPORT_JWKS_URI=issuer.jwks_uri,
        SECURE_EXPORT_DB=str(db),
        SECURE_EXPORT_OPS_POLL_SECONDS="0.2",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "secure_export.cli", "serve", "--port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = ServeLog(process).url()  # serve bound port 0 and logged where, once started
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        assert list_work_items(str(db)) == []
        assert _cli("replay", "--id", str(row_id), env=env).returncode == 0
        deadline = time.monotonic() + 15
        # done is confirmed a moment after the work item is written (the confirmation shares a commit)
        while (delivery := trace(str(db), _alert_id(5), details=True)["deliveries"][0])["state"] != "done":
            assert time.monotonic() < deadline, "the replayed delivery was not dispatched by the running receiver"
            time.sleep(0.05)
        assert delivery["work_item"] == "INC0000001" and len(list_work_items(str(db))) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()


# --- the ops port (in process, loopback) ----------------------------------------------------


def test_ops_port_serves_metrics_readiness_detail_and_operations_and_the_public_port_does_not(
    tmp_path: Path, issuer: LocalIssuer
) -> None:
    with start_receiver(tmp_path, issuer, ops_port="9999", ops_poll_seconds="30") as rx:
        server = rx.server
        assert server is not None and server.ops_url != server.url
        public, ops = server.url, server.ops_url
        assert httpx.get(f"{public}/metrics").status_code == 404
        assert httpx.post(f"{public}/ops/replay", json={"all": True}).status_code == 404
        assert httpx.get(f"{ops}/metrics").status_code == 200
        assert httpx.get(f"{ops}/readyz").json() == {"status": "ready"}
        assert httpx.get(f"{ops}/healthz").status_code == 200
        assert httpx.post(f"{ops}/api/alerts", json={}).status_code == 404
        row_ids = _parked_db(Path(rx.db_path), 11, 12)
        bad = httpx.post(f"{ops}/ops/discard", json={"ids": [row_ids[0]]})
        assert bad.status_code == 422 and "reason" in bad.json()["detail"]
        gone = httpx.post(f"{ops}/ops/discard", json={"ids": [row_ids[0]], "reason": "test", "by": "carol"})
        assert gone.json() == {"changed": [row_ids[0]], "skipped": []}
        # poll interval 30 s: only the endpoint's poke can make this replay take effect now
        back = httpx.post(f"{ops}/ops/replay", json={"all": True})
        assert back.json() == {"changed": [row_ids[1]], "skipped": []}
        deadline = time.monotonic() + 10
        while trace(rx.db_path, _alert_id(12))["deliveries"][0]["state"] != "done":
            assert time.monotonic() < deadline, "the replay through the ops endpoint was not dispatched"
            time.sleep(0.05)
        traced = httpx.get(f"{ops}/ops/trace/{_alert_id(12)}").json()
        assert traced["work_items"] == [{"number": "INC0000001", "url": None}]
        closed = httpx.post(f"{ops}/ops/work-items/INC0000001/close", json={"note": "fixed the disk"})
        assert closed.status_code == 200 and closed.json()["state"] == "Closed"
        assert httpx.post(f"{ops}/ops/work-items/INC0000999/resolve", json={"note": "x"}).status_code == 404


def test_without_ops_port_everything_stays_on_the_main_port(tmp_path: Path, issuer: LocalIssuer) -> None:
    with start_receiver(tmp_path, issuer) as rx:
        assert rx.server is not None and rx.server.ops_url == rx.server.url
        assert httpx.get(f"{rx.server.url}/metrics").status_code == 200
        assert httpx.get(f"{rx.server.url}/ops/trace/x").json()["deliveries"] == []


def test_public_readiness_gives_no_reasons_when_an_ops_port_is_set(tmp_path: Path, issuer: LocalIssuer) -> None:
    with start_receiver(tmp_path, issuer, ops_port="9999") as rx:
        assert rx.server is not None
        rx.server.runtime.shutting_down = True  # any reason to be not ready
        public = httpx.get(f"{rx.server.url}/readyz")
        detailed = httpx.get(f"{rx.server.ops_url}/readyz")
        rx.server.runtime.shutting_down = False
    assert public.status_code == 503 and "shutting down" not in public.text
    assert detailed.status_code == 503 and "shutting down" in detailed.json()["detail"]


# --- work-items resolve / close -------------------------------------------------------------


def test_work_items_resolve_and_close_by_number_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.db"
    apply_all(db, [fired("a1"), fired("a2", rule="disk-full")])
    assert (
        main("work-items", ["resolve", "inc0000001", "--note", "restarted the VM", "--by", "dave", "--db", str(db)])
        == 0
    )
    assert "INC0000001 is Resolved" in capsys.readouterr().out
    assert main("work-items", ["resolve", "INC0000001", "--note", "again", "--db", str(db)]) == 1
    assert "only a New work item can be resolved" in capsys.readouterr().err
    assert main("work-items", ["close", "INC0000001", "--note", "post-mortem done", "--db", str(db)]) == 0
    assert main("work-items", ["close", "INC0000404", "--note", "x", "--db", str(db)]) == 1
    assert "no work item INC0000404" in capsys.readouterr().err
    assert main("work-items", ["close", "INC0000002", "--db", str(db)]) == 2  # --note is required
    first = list_work_items(str(db))[0]
    assert first["state"] == "Closed"
    assert any(note.endswith("Resolved by dave: restarted the VM") for note in first["notes"])
    assert any("Closed by " in note and note.endswith(": post-mortem done") for note in first["notes"])
    # Closed is final: a new instance with the same correlation key opens a new work item.
    apply_all(db, [fired("a1-again", key=fired("a1").correlation_key)])
    assert [item["state"] for item in list_work_items(str(db))] == ["Closed", "New", "New"]


def test_work_items_on_a_database_that_is_not_ours_says_so(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.close()
    for command in ("work-items", "cmdb"):
        result = _cli(command, "--db", str(other))
        assert result.returncode == 1 and "not a secure-export database" in result.stderr, result
    result = _cli("trace", "x", "--db", str(other))
    assert result.returncode == 1 and "not secure-export's" in result.stderr


# --- upgrade and retention ------------------------------------------------------------------


def test_a_database_of_the_first_schema_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE inbox (id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, monitor_condition TEXT NOT NULL,
            body BLOB NOT NULL, received_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'parked')),
            attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, next_attempt_at REAL, done_at TEXT, parked_at TEXT,
            UNIQUE (alert_id, monitor_condition));
        CREATE TABLE work_items (id INTEGER PRIMARY KEY AUTOINCREMENT, number TEXT UNIQUE,
            correlation_key TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('New', 'Resolved')), severity TEXT,
            priority INTEGER NOT NULL, title TEXT NOT NULL, description TEXT NOT NULL, opened_at TEXT NOT NULL,
            resolved_at TEXT, occurrences INTEGER NOT NULL DEFAULT 1);
        INSERT INTO inbox (alert_id, monitor_condition, body, received_at, state, attempts, last_error, parked_at)
            VALUES ('old-1', 'Fired', '{}', '2026-01-01T00:00:00.000Z', 'parked', 2, 'boom',
                    '2026-01-01T00:01:00.000Z');
        INSERT INTO work_items (number, correlation_key, state, priority, title, description, opened_at)
            VALUES ('INC0000001', 'k', 'New', 3, 't', 'd', '2026-01-01T00:00:00.000Z');
        """
    )
    conn.close()
    assert discard(str(db), [1], reason="from before the upgrade").changed == [1]
    assert trace(str(db), "old-1")["deliveries"][0]["last_error"] == "boom"
    assert trace(str(db), "old-1", details=True)["deliveries"][0]["discard_reason"] == "from before the upgrade"
    assert main("work-items", ["close", "INC0000001", "--note", "old", "--db", str(db)]) == 0
    assert list_work_items(str(db))[0]["state"] == "Closed"


async def test_discarded_rows_and_resolved_work_items_leave_after_their_retention(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    first, second = await _park(db, 1, 2)
    discard(str(db), [first], reason="noise")
    inbox = Inbox(str(db))
    backend = EmbeddedBackend(str(db))
    await inbox.open()
    await backend.start()
    try:
        for event in (fired("a1"), resolved("a1"), fired("a2", rule="other")):
            await backend.apply(event)
        ten_years = 10 * 365 * 86400
        assert (await inbox.prune_discarded(ten_years), await backend.prune_resolved(ten_years)) == (0, 0)
        await asyncio.sleep(0.01)
        assert (await inbox.prune_discarded(0), await backend.prune_resolved(0)) == (1, 1)
    finally:
        await inbox.close()
        await backend.close()
    assert count_by_state(str(db)) == {"pending": 0, "done": 0, "parked": 1}
    assert [item["state"] for item in list_work_items(str(db))] == ["New"]  # the open one stays


# --- small things ---------------------------------------------------------------------------


def test_version_and_a_misspelt_command() -> None:
    from importlib.metadata import version

    result = _cli("--version")
    assert result.returncode == 0 and result.stdout == f"secure-export {version('secure-export')}\n"
    wrong = _cli("trcae")
    assert wrong.returncode == 2 and "did you mean 'trace'?" in wrong.stderr


def test_serve_lists_every_configuration_problem_at_once_with_values_and_suggestions(tmp_path: Path) -> None:
    result = _cli(
        "serve",
        "--port",
        "0",
        env=_clean_env(
            SECURE_EXPORT_AUDIENCE="api://x",  # misspelt: AUDIENCES
            SECURE_EXPORT_TENANT_ID="contoso.onmicrosoft.com",
            SECURE_EXPORT_CORRELATION="rule",
            SECURE_EXPORT_ITSM="servicenow",
            SECURE_EXPORT_SERVICENOW_URL="http://acme.service-now.com",
            SECURE_EXPORT_SERVICENOW_USERNAME="svc",
            SECURE_EXPORT_SERVICENOW_PASSWORD="hunter2-secret",
            SECURE_EXPORT_SERVICENOW_TIMEOUT_SECONDS="-1",
        ),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    named = {line.split(":", 1)[0] for line in lines[1:]}
    assert named == {
        "SECURE_EXPORT_AUDIENCES",
        "SECURE_EXPORT_TENANT_ID",
        "SECURE_EXPORT_CORRELATION",
        "SECURE_EXPORT_SERVICENOW_URL",
        "SECURE_EXPORT_SERVICENOW_TIMEOUT_SECONDS",
        "SECURE_EXPORT_AUDIENCE",
    }, result.stderr
    assert any("'contoso.onmicrosoft.com'" in line for line in lines)
    assert any(line.startswith("SECURE_EXPORT_CORRELATION") and "'rule'" in line for line in lines)
    assert any(line.startswith("SECURE_EXPORT_SERVICENOW_TIMEOUT_SECONDS") and "-1" in line for line in lines)
    assert "SECURE_EXPORT_AUDIENCE: unknown variable, ignored; did you mean SECURE_EXPORT_AUDIENCES?" in lines
    assert "hunter2-secret" not in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_variable_alone_is_a_warning_with_a_suggestion(tmp_path: Path, issuer: LocalIssuer) -> None:
    from receiver.settings import unknown_variables

    lines = unknown_variables(
        {
            "SECURE_EXPORT_INBOX_RETENTION_DAY": "3",
            "SECURE_EXPORT_DB": "x",
            "SECURE_EXPORT_ITSM_REVISION": "set by the component",
            "SECURE_EXPORT_SERVICENOW_PASWORD": "p",
            "SECURE_EXPORT_BMC_URL": "https://x",
        }
    )
    assert lines == [
        "SECURE_EXPORT_INBOX_RETENTION_DAY: unknown variable, ignored; "
        "did you mean SECURE_EXPORT_INBOX_RETENTION_DAYS?",
        "SECURE_EXPORT_SERVICENOW_PASWORD: unknown variable, ignored; did you mean SECURE_EXPORT_SERVICENOW_PASSWORD?",
    ]


def test_serve_refuses_an_ops_port_equal_to_the_main_port(tmp_path: Path, issuer: LocalIssuer) -> None:
    env = _clean_env(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES="a",
        SECURE_EXPORT_OPS_PORT="8181",
        SECURE_EXPORT_DB=str(tmp_path / "x.db"),
    )
    result = _cli("serve", "--port", "8181", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "SECURE_EXPORT_OPS_PORT: must differ from --port" in result.stderr


def test_a_dispatch_summary_line_counts_accepted_and_applied_alerts(
    tmp_path: Path, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="receiver.observability.activity")
    with start_receiver(tmp_path, issuer, activity_log_seconds="0.2") as rx:
        token = issuer.mint()
        for n in (1, 2):
            assert rx.post_alert(alert_body(n), token).status_code == 202
        assert rx.post_alert(alert_body(1), token).status_code == 202  # a repeat is not counted
        rx.wait_dispatched()
        deadline = time.monotonic() + 5
        while True:
            summaries = [r for r in caplog.records if getattr(r, "event", None) == "dispatch_summary"]
            if sum(r.accepted for r in summaries) == 2 and sum(r.applied for r in summaries) == 2:
                break
            assert time.monotonic() < deadline, [(r.accepted, r.applied) for r in summaries]
            time.sleep(0.05)
        assert all(r.parked == 0 for r in summaries)
