"""``secure-export work-items`` / ``cmdb`` / ``--help``: the command contracts of docs/design.md."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.cli.commands import main
from tests.receiver.itsm.embedded.test_embedded import (
    CI_FIELDS,
    VM_ID,
    WORK_ITEM_FIELDS,
    apply_all,
    fired,
    resolved,
)
from tests.support.paths import REPO_ROOT


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a child process (what a user types)."""
    return subprocess.run(
        [sys.executable, "-m", "secure_export.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd or REPO_ROOT,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "secure-export.db"
    apply_all(
        path,
        [
            fired("a1"),
            resolved("a1"),
            fired("a2", severity="Sev0", configuration_items=("vm-web-01", "db-01"), rule="disk-full"),
        ],
    )
    return path


def test_work_items_json_is_an_array_with_exactly_the_design_fields(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main("work-items", ["--json", "--db", str(db)]) == 0
    items = json.loads(capsys.readouterr().out)
    assert isinstance(items, list) and len(items) == 2
    assert all(set(item) == WORK_ITEM_FIELDS for item in items)
    first, second = items
    assert (first["number"], first["state"], first["priority"]) == ("INC0000001", "Resolved", 3)
    assert first["resolved_at"].endswith("Z") and first["opened_at"].endswith("Z")
    assert (second["number"], second["state"], second["severity"], second["priority"]) == (
        "INC0000002",
        "New",
        "Sev0",
        1,
    )
    assert second["configuration_items"] == ["vm-web-01", "db-01"]
    assert isinstance(second["alert_ids"], list) and isinstance(second["notes"], list)


def test_cmdb_json_is_an_array_with_exactly_the_design_fields(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main("cmdb", ["--json", "--db", str(db)]) == 0
    cis = json.loads(capsys.readouterr().out)
    assert [ci["name"] for ci in cis] == ["vm-web-01", "db-01"]
    assert all(set(ci) == CI_FIELDS for ci in cis)
    assert cis[0]["azure_resource_id"] == VM_ID
    assert cis[1]["azure_resource_id"] is None


def test_tables_are_readable(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main("work-items", ["--db", str(db)]) == 0
    table = capsys.readouterr().out
    assert "Work items (2)" in table
    assert "INC0000001" in table and "Resolved" in table and "[Sev0] disk-full" in table
    assert "Parked deliveries (0)" in table

    assert main("cmdb", ["--db", str(db)]) == 0
    table = capsys.readouterr().out
    assert "Configuration items (2)" in table and VM_ID in table and "no matching alertTargetID" in table


def test_db_defaults_to_the_environment_variable(db: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "SECURE_EXPORT_DB": str(db)}
    result = run_cli("cmdb", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [ci["name"] for ci in json.loads(result.stdout)] == ["vm-web-01", "db-01"]


def test_db_defaults_to_the_current_directory(db: Path) -> None:
    result = run_cli("work-items", "--json", env={"PATH": "/usr/bin:/bin"}, cwd=db.parent)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 2


@pytest.mark.parametrize("command", ["work-items", "cmdb"])
def test_missing_database_is_a_clear_error_and_is_not_created(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "absent.db"
    result = run_cli(command, "--db", str(missing))
    assert result.returncode == 1
    assert "no database at" in result.stderr and str(missing) in result.stderr
    assert "Traceback" not in result.stderr
    assert not missing.exists()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("this is not sqlite, just text long enough to have a header " * 20)
    assert main("cmdb", ["--db", str(junk)]) == 1
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["serve", "demo", "work-items", "cmdb"])
def test_every_command_has_help(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"secure-export {command}" in result.stdout
    assert "--help" in result.stdout


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main("cmdb", ["--no-such-flag"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    assert main("serve", ["--port", "70000"]) == 2
    assert main("nonsense", []) == 2


def park_one(db: Path, error: str) -> None:
    """Put one delivery in the receiver's inbox and park it, as the dispatcher does on failure."""
    from receiver.storage.sqlite.inbox import Inbox

    async def run() -> None:
        inbox = Inbox(str(db))
        await inbox.open()
        try:
            await inbox.put(fired("a9").alert_id, "Fired", b'{"schemaId": "azureMonitorCommonAlertSchema"}')
            [row] = await inbox.pending()
            await inbox.park(row.id, 15, error)
        finally:
            await inbox.close()

    asyncio.run(run())


def test_parked_deliveries_are_visible(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    park_one(db, "ServiceNow refused the incident: 403 data policy")

    assert main("work-items", ["--db", str(db)]) == 0
    table = capsys.readouterr().out
    assert "Work items (2)" in table
    assert "Parked deliveries (1)" in table and "403 data policy" in table

    assert main("work-items", ["--failed", "--json", "--db", str(db)]) == 0
    [parked] = json.loads(capsys.readouterr().out)
    assert parked["alert_id"] == fired("a9").alert_id
    assert parked["last_error"] == "ServiceNow refused the incident: 403 data policy"

    assert main("work-items", ["--failed", "--db", str(db)]) == 0
    assert "Parked deliveries (1)" in capsys.readouterr().out


def test_failed_on_a_missing_database_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main("work-items", ["--failed", "--db", str(tmp_path / "absent.db")]) == 1
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "absent.db").exists()


def test_paths_with_uri_characters_are_read_as_plain_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    odd = tmp_path / "ops #1 ?50% done" / "secure-export.db"
    odd.parent.mkdir()
    apply_all(odd, [fired("a1")])
    assert main("cmdb", ["--json", "--db", str(odd)]) == 0
    assert [ci["name"] for ci in json.loads(capsys.readouterr().out)] == ["vm-web-01"]


@pytest.mark.parametrize(
    "argv",
    [
        ("trace", "some-alert-id"),
        ("replay", "--all"),
        ("discard", "--id", "1", "--reason", "test"),
        ("work-items", "resolve", "INC0000001", "--note", "done"),
        ("work-items", "close", "INC0000001", "--note", "done"),
        ("work-items",),
        ("cmdb",),
    ],
)
def test_an_unreachable_postgresql_database_is_one_line_and_exit_1_without_the_password(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.postgres import free_port

    url = f"postgresql://receiver:s3cret-pw@127.0.0.1:{free_port()}/secure_export"
    assert main(argv[0], [*argv[1:], "--db", url]) == 1
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert "PostgreSQL" in line and "s3cret-pw" not in line and captured.out == ""


@pytest.mark.parametrize("argv", [("work-items",), ("cmdb",), ("trace", "some-alert-id"), ("replay", "--all")])
def test_a_db_auth_mode_serve_would_refuse_is_refused_before_connecting(
    argv: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.postgres import free_port

    # Nothing listens on the port: without the check the command would fail later, with exit 1.
    monkeypatch.setenv("SECURE_EXPORT_DB_AUTH", "entraid")
    url = f"postgresql://receiver:s3cret-pw@127.0.0.1:{free_port()}/secure_export"
    assert main(argv[0], [*argv[1:], "--db", url]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"secure-export {argv[0]}: $SECURE_EXPORT_DB_AUTH: must be password or entra (got 'entraid')"
    monkeypatch.setenv("SECURE_EXPORT_DB_AUTH", " Entra ")
    assert main(argv[0], [*argv[1:], "--db", url]) == 1  # accepted as serve accepts it; the server is away
