"""What ``SECURE_EXPORT_DB`` (and ``--db``) names: the one place a value becomes a store location.

A path is a SQLite file (one replica); a ``postgresql://`` (or ``postgres://``) libpq URL is a
PostgreSQL database shared by several replicas (docs/postgresql.md), checked here for its TLS mode
and parts. Any other URL scheme is refused, so a URL can never turn into a SQLite file with a
strange name. Errors never repeat the value of a URL (it may carry a password), only its scheme.
:func:`is_postgres` is the same reading of the scheme alone, for code that holds a checked value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresDatabase", "SqliteFile", "database_location", "is_postgres"]

# RFC 3986 scheme syntax, at the very start: "./odd://name.db" and r"C:\data\x.db" are paths.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_POSTGRESQL_SCHEMES = frozenset({"postgresql", "postgres"})


def is_postgres(value: str) -> bool:
    """Whether ``value`` names a PostgreSQL database (``True``) or a SQLite file (``False``).

    Only the scheme is read, as :func:`database_location` reads it (the URL's parts are checked there,
    once, where the value comes in); any other URL scheme is its ``ValueError``, never a SQLite file.
    """
    match = _SCHEME.match(value.strip())
    if match is None:
        return False
    scheme = match.group(1).lower()
    if scheme in _POSTGRESQL_SCHEMES:
        return True
    raise ValueError(
        f"the URL scheme {scheme}:// is not supported; use a SQLite file path such as /data/secure-export.db"
    )


@dataclass(frozen=True)
class SqliteFile:
    """A SQLite database file: the inbox and the embedded backend's tables live in it."""

    path: str

    def require_directory(self) -> None:
        """Raise ``ValueError`` unless the file's directory exists (it is never created silently)."""
        directory = Path(self.path).expanduser().parent
        if not directory.exists():
            raise ValueError(
                f"the directory {str(directory)!r} of the SQLite file does not exist; create it (with "
                "write access for the receiver's user) or point SECURE_EXPORT_DB at a file in an existing directory"
            )
        if not directory.is_dir():
            raise ValueError(f"{str(directory)!r} is not a directory, so the SQLite file cannot be created in it")


@dataclass(frozen=True)
class PostgresDatabase:
    """A PostgreSQL database: the inbox, the dispatch lease and the embedded backend's tables live in it."""

    url: str

    @property
    def path(self) -> str:
        """The value to pass on (``SECURE_EXPORT_DB``): the URL itself."""
        return self.url

    def require_directory(self) -> None:
        """Nothing to create locally for a server database."""


def database_location(value: str) -> SqliteFile | PostgresDatabase:
    """The store ``value`` names; ``ValueError`` (saying what to set instead) for anything unsupported."""
    text = value.strip()
    if not text:
        raise ValueError("must be a file path for the SQLite database, such as ./secure-export.db")
    if not is_postgres(text):
        return SqliteFile(text)
    from receiver.storage.postgres.connect import check_url

    check_url(text)  # a DatabaseUrlError (ValueError) says what to change, without the URL
    return PostgresDatabase(text)
