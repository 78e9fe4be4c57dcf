"""``SECURE_EXPORT_DB_AUTH`` for the operators' commands: one reading, taken as the receiver's connection takes it."""

from __future__ import annotations

import pytest

from receiver.storage.postgres import operations
from receiver.storage.readers import db_auth

URL = "postgresql://secure-export@db.example.com/secure_export?sslmode=require"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "password"), ("password", "password"), (" Entra ", "entra"), ("", "password"), ("token", "password")],
)
def test_db_auth_reads_the_variable_as_the_connection_takes_it(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: str
) -> None:
    if value is None:
        monkeypatch.delenv("SECURE_EXPORT_DB_AUTH", raising=False)
    else:
        monkeypatch.setenv("SECURE_EXPORT_DB_AUTH", value)
    assert db_auth() == expected


def test_the_postgresql_operations_connect_with_that_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECURE_EXPORT_DB_AUTH", "entra")
    assert operations._database(URL).auth == "entra"  # the managed identity's token, not the URL's password
    monkeypatch.setenv("SECURE_EXPORT_DB_AUTH", "password")
    assert operations._database(URL).auth == "password"
