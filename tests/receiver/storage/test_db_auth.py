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


def test_no_entra_token_is_handled_as_an_unreachable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a managed identity the credential chain fails; intake, dispatch, /readyz and the commands
    # already treat connection errors as "the database is away", so the token failure must be one.
    import asyncio

    import azure.identity
    from azure.identity import CredentialUnavailableError

    from receiver.storage.postgres.connect import (
        Database,
        EntraTokenError,
        connection_errors,
        entra_token_source,
    )

    class NoIdentity:
        def __init__(self, **options: object) -> None:
            pass

        def get_token(self, *scopes: str) -> object:
            raise CredentialUnavailableError("ManagedIdentityCredential authentication unavailable.\nmore lines")

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", NoIdentity)
    with pytest.raises(EntraTokenError) as caught:
        asyncio.run(Database("postgresql://app@127.0.0.1:1/x", token_source=entra_token_source()).connect())
    assert isinstance(caught.value, connection_errors())
    assert str(caught.value).startswith(
        "no Entra ID access token for PostgreSQL (ManagedIdentityCredential authentication unavailable.); "
    )
