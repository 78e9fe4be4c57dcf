"""``SECURE_EXPORT_DB`` as ``secure-export serve`` reads it: refused at start, one line, exit 2.

A URL scheme the receiver does not support must never become a SQLite file with a strange name
(``postgresql://`` is PostgreSQL: a bad one is refused naming what to change, never the URL); a
missing directory is not created; a database that cannot be opened is one line, with no traceback
and no asyncio noise after it. Each case runs the real command in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.storage.location import SqliteFile, database_location

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def serve(tmp_path: Path, db: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_EXPORT_")}
    env.update(
        SECURE_EXPORT_TENANT_ID=TENANT,
        SECURE_EXPORT_AUDIENCES="api://secure-export-test",
        # Nothing listens there: the start must fail on the database before keys matter.
        SECURE_EXPORT_JWKS_URI="http://127.0.0.1:9/keys",
        SECURE_EXPORT_DB=db,
    )
    return subprocess.run(
        [sys.executable, "-m", "secure_export.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _routine(line: str) -> bool:
    try:
        entry = json.loads(line)
    except ValueError:
        return False
    return isinstance(entry, dict) and entry.get("level") in ("debug", "info")


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode == 2, result.stderr
    # Everything on stderr but the server's routine info lines (JSON) is the refusal, one line.
    problems = [line for line in result.stderr.splitlines() if not _routine(line)]
    assert len(problems) == 1 and "SECURE_EXPORT_DB" in problems[0], result.stderr
    for text in expected:
        assert text in problems[0], problems[0]
    assert "Traceback" not in result.stderr
    assert "never retrieved" not in result.stderr
    return problems[0]


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("mysql://receiver:s3cret-pw@db.example.org/secure_export", "mysql://"),
        ("sqlite:///data/secure-export.db", "sqlite://"),
        ("https://db.example.org/secure_export", "https://"),
    ],
)
def test_unsupported_url_scheme_is_refused_at_start(tmp_path: Path, url: str, scheme: str) -> None:
    line = assert_one_line_refusal(serve(tmp_path, url), scheme, "not supported", "SQLite file path")
    assert "s3cret-pw" not in line and "db.example.org" not in line  # a URL may carry a password
    assert list(tmp_path.iterdir()) == []  # before: ./postgresql:/... became a SQLite file


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://receiver:s3cret-pw@db.example.org:5432/secure_export?sslmode=disable", "TLS is required"),
        ("postgres://receiver:s3cret-pw@db.example.org", "names no database"),
        ("POSTGRESQL://db.example.org/secure_export", "names no user"),
    ],
)
def test_a_postgresql_url_that_cannot_work_is_refused_naming_what_to_change(
    tmp_path: Path, url: str, expected: str
) -> None:
    line = assert_one_line_refusal(serve(tmp_path, url), "PostgreSQL URL", expected)
    assert "s3cret-pw" not in line and "db.example.org" not in line
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_postgresql_server_fails_the_start_in_one_line_without_the_password(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = serve(tmp_path, f"postgresql://receiver:s3cret-pw@127.0.0.1:{port}/x")
    assert result.returncode == 1, result.stderr  # not configuration: a restart may find the server up
    [line] = [line for line in result.stderr.splitlines() if json.loads(line)["level"] == "error"]
    assert "cannot open the inbox database" in line and "SECURE_EXPORT_DB" in line
    assert "s3cret-pw" not in result.stderr and "Traceback" not in result.stderr


def test_a_refused_postgresql_password_is_configuration_exit_2(tmp_path: Path, postgres_url: str) -> None:
    user, rest = postgres_url.split("//", 1)[1].split(":", 1)
    wrong = f"postgresql://{user}:wrong-s3cret@{rest.split('@', 1)[1]}"
    line = assert_one_line_refusal(serve(tmp_path, wrong), "cannot open the inbox database", "password")
    assert "wrong-s3cret" not in line


def test_missing_directory_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "not-there" / "deeper"
    line = assert_one_line_refusal(serve(tmp_path, str(missing / "secure-export.db")), str(missing), "does not exist")
    assert "create it" in line
    assert not (tmp_path / "not-there").exists()


@pytest.mark.parametrize("kind", ["a directory", "not a database", "a file as the directory"])
def test_database_that_cannot_be_opened_is_one_line_and_exit_2(tmp_path: Path, kind: str) -> None:
    if kind == "a directory":
        db = tmp_path / "inbox.db"
        db.mkdir()
        expected = "unable to open database file"
    elif kind == "not a database":
        db = tmp_path / "inbox.db"
        db.write_bytes(b"these are not the bytes of a SQLite database, " * 100)
        expected = "file is not a database"
    else:
        (tmp_path / "plain-file").write_text("x")
        db = tmp_path / "plain-file" / "inbox.db"
        expected = "is not a directory"
    result = serve(tmp_path, str(db))
    assert_one_line_refusal(result, str(db.parent if kind == "a file as the directory" else db), expected)


def test_a_sqlite_path_is_a_sqlite_file_and_windows_style_paths_are_paths() -> None:
    assert database_location(" ./secure-export.db ") == SqliteFile("./secure-export.db")
    assert database_location(r"C:\data\secure-export.db") == SqliteFile(r"C:\data\secure-export.db")
    assert database_location("./odd://name.db") == SqliteFile("./odd://name.db")
    with pytest.raises(ValueError, match="file path"):
        database_location("  ")


def _command(tmp_path: Path, *argv: str, db_env: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_EXPORT_")}
    if db_env is not None:
        env["SECURE_EXPORT_DB"] = db_env
    return subprocess.run(
        [sys.executable, "-m", "secure_export.cli", *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("argv", "db_env"),
    [
        (("work-items", "--db", "mysql://receiver:s3cret-pw@db.example.org/x"), None),
        (("work-items", "--json"), "mysql://receiver:s3cret-pw@db.example.org/x"),
        (("cmdb",), "mysql://receiver:s3cret-pw@db.example.org/x"),
        (("demo", "--db", "mysql://receiver:s3cret-pw@db.example.org/x"), None),
        (("trace", "some-alert-id"), "sqlite:///receiver:s3cret-pw@db.example.org/x"),
        (("replay", "--all"), "https://receiver:s3cret-pw@db.example.org/x"),
        (("discard", "--id", "1", "--reason", "test"), "mysql://receiver:s3cret-pw@db.example.org/x"),
    ],
)
def test_every_command_with_a_database_refuses_a_url_the_same_way(
    tmp_path: Path, argv: tuple[str, ...], db_env: str | None
) -> None:
    result = _command(tmp_path, *argv, db_env=db_env)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert "not supported" in line and "SQLite file path" in line
    assert "s3cret-pw" not in result.stderr and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_demo_does_not_create_a_missing_directory(tmp_path: Path) -> None:
    result = _command(tmp_path, "demo", "--db", str(tmp_path / "missing" / "demo.db"))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "does not exist" in line and "Traceback" not in result.stderr
    assert not (tmp_path / "missing").exists()


def test_demo_keeps_to_sqlite(tmp_path: Path) -> None:
    result = _command(tmp_path, "demo", "--db", "postgresql://receiver:s3cret-pw@db.example.org/x")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "SQLite file" in line and "s3cret-pw" not in line
