"""One reading of ``SECURE_EXPORT_DB`` / ``--db``: ``serve``'s settings and every CLI command agree on each value.

Each edge case goes through the public entry points: :func:`receiver.settings.load_settings` (what
``serve`` and the HTTP ops endpoints use) and ``secure-export`` commands, with the value as ``--db`` and
as ``$SECURE_EXPORT_DB``. A value the settings accept is the same database for every command (an alert
put through the store the settings pick is the one ``trace`` finds); a value the settings refuse is
refused by every command with the same message, exit 2, without the URL.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from receiver.http.backends import create_backend
from receiver.settings import ReceiverSettings, SettingsError, load_settings
from receiver.storage import is_postgres, open_store
from receiver.storage.location import PostgresDatabase, SqliteFile, database_location
from secure_export.cli import main

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ALERT_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.AlertsManagement/alerts/a1"

SQLITE_PATHS = [
    pytest.param("  ./secure-export.db \t", "secure-export.db", id="blanks-around-a-path"),
    pytest.param("./odd://name.db", "odd:/name.db", id="a-path-with-://-inside"),
    pytest.param(r"C:\data\x.db", r"C:\data\x.db", id="windows-path"),
]
"""(value, the file it names relative to the working directory): a scheme only ever starts a value."""

REFUSED = [
    pytest.param("sqlite://x", "sqlite://", id="sqlite-scheme"),
    pytest.param("C://data/x.db", "c://", id="drive-letter-with-two-slashes"),
    pytest.param(" SQLITE:///data/x.db", "sqlite://", id="upper-case-sqlite-scheme"),
    pytest.param("mysql://receiver:s3cret-pw@db.example.org/x", "mysql://", id="mysql-with-password"),
    pytest.param("postgresql+asyncpg://receiver:s3cret-pw@db.example.org/x", "postgresql+asyncpg://", id="driver"),
]
"""(value, the scheme the refusal names): any URL scheme but PostgreSQL's is refused everywhere."""

COMMANDS = [
    pytest.param(("trace", ALERT_ID, "--json"), id="trace"),
    pytest.param(("replay", "--all", "--json"), id="replay"),
    pytest.param(("discard", "--id", "1", "--reason", "test", "--json"), id="discard"),
    pytest.param(("work-items", "--json"), id="work-items"),
    pytest.param(("work-items", "resolve", "INC0000001", "--note", "done"), id="work-items-resolve"),
    pytest.param(("cmdb", "--json"), id="cmdb"),
]


@pytest.fixture(autouse=True)
def _no_receiver_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets: no ``SECURE_EXPORT_*`` of the caller, and relative paths under ``tmp_path``."""
    import os

    for key in list(os.environ):
        if key.startswith("SECURE_EXPORT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def settings_for(db: str) -> ReceiverSettings:
    return load_settings(
        {"SECURE_EXPORT_TENANT_ID": TENANT, "SECURE_EXPORT_AUDIENCES": "api://x", "SECURE_EXPORT_DB": db}
    )


def run(
    argv: tuple[str, ...], db: str, via: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """One command with ``db`` as ``--db`` or as ``$SECURE_EXPORT_DB``: exit status, stdout, stderr."""
    if via == "--db":
        argv = (*argv, "--db", db)
    else:
        monkeypatch.setenv("SECURE_EXPORT_DB", db)
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def put_one_alert(settings: ReceiverSettings, alert_id: str) -> None:
    """An accepted alert in the inbox of the store the settings pick, as ``serve`` would keep it."""

    async def put() -> None:
        store = open_store(settings.db, db_auth=settings.db_auth)
        await store.open()
        try:
            await store.put(alert_id, "Fired", b'{"schemaId": "azureMonitorCommonAlertSchema"}')
        finally:
            await store.close()

    asyncio.run(put())


def assert_same_database(
    db: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *,
    postgres: bool,
    alert_id: str = ALERT_ID,
) -> None:
    """The store ``serve``'s settings pick for ``db`` is the database every command reads and changes."""
    settings = settings_for(db)
    assert is_postgres(settings.db) is postgres
    assert type(create_backend(settings)).__name__ == ("EmbeddedPostgresBackend" if postgres else "EmbeddedBackend")
    put_one_alert(settings, alert_id)
    for via in ("--db", "env"):
        status, out, err = run(("trace", alert_id, "--json"), db, via, monkeypatch, capsys)
        assert status == 0, err
        [delivery] = json.loads(out)["deliveries"]
        assert delivery["state"] == "pending", delivery
        status, out, err = run(("replay", "--all", "--json"), db, via, monkeypatch, capsys)
        assert (status, json.loads(out)) == (0, {"changed": [], "skipped": []}), err
        status, out, err = run(("work-items", "--json"), db, via, monkeypatch, capsys)
        assert (status, json.loads(out)) == (0, []), err
        status, out, err = run(("work-items", "resolve", "INC0000001", "--note", "done"), db, via, monkeypatch, capsys)
        assert status == 1 and "no work item INC0000001" in err, err


@pytest.mark.parametrize(("value", "file"), SQLITE_PATHS)
def test_a_path_is_the_same_sqlite_file_for_serve_and_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str, file: str
) -> None:
    (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
    assert database_location(value) == SqliteFile(value.strip())
    assert_same_database(value, monkeypatch, capsys, postgres=False)
    assert (tmp_path / file).is_file()  # the file the value names, not one with a stranger name
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [Path(file).name]


def _variants(url: str) -> list[str]:
    rest = url.removeprefix("postgresql://")
    return [f"  postgresql://{rest}\t", f"POSTGRESQL://{rest}", f"postgres://{rest}", f"PostgreS://{rest}"]


def test_a_postgresql_url_is_the_same_database_for_serve_and_every_command(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    variants = _variants(postgres_url)
    for number, value in enumerate(variants):
        assert database_location(value) == PostgresDatabase(value.strip())
        assert_same_database(value, monkeypatch, capsys, postgres=True, alert_id=f"{ALERT_ID}-{number}")
    for value in variants:  # one database: each spelling finds the alerts put through every other
        for number in range(len(variants)):
            status, out, err = run(("trace", f"{ALERT_ID}-{number}", "--json"), value, "--db", monkeypatch, capsys)
            assert status == 0 and len(json.loads(out)["deliveries"]) == 1, err


@pytest.mark.parametrize(("value", "scheme"), REFUSED)
@pytest.mark.parametrize("argv", COMMANDS)
@pytest.mark.parametrize("via", ["--db", "env"])
def test_an_unsupported_scheme_is_refused_with_the_same_message_by_serve_and_every_command(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str,
    scheme: str,
    argv: tuple[str, ...],
    via: str,
) -> None:
    with pytest.raises(ValueError) as reading:
        database_location(value)
    message = str(reading.value)
    assert f"the URL scheme {scheme} is not supported" in message
    with pytest.raises(ValueError, match="not supported") as predicate:
        is_postgres(value)  # never "a SQLite file": the same refusal
    assert str(predicate.value) == message

    with pytest.raises(SettingsError) as refused:
        settings_for(value)
    assert str(refused.value) == f"invalid receiver configuration: SECURE_EXPORT_DB: {message}"

    status, out, err = run(argv, value, via, monkeypatch, capsys)
    prog = "secure-export " + " ".join(argv[:2] if argv[1] == "resolve" else argv[:1])
    assert (status, out, err) == (2, "", f"{prog}: --db / $SECURE_EXPORT_DB: {message}\n")
    for secret in ("s3cret-pw", "db.example.org"):
        assert secret not in str(refused.value) and secret not in err
    assert list(tmp_path.iterdir()) == []  # no SQLite file with a strange name
