"""What ``SECURE_EXPORT_DB`` (and ``--db``) names: the one place a value becomes a store location.

Today the only store is a SQLite file. A value with a URL scheme (``name://...``) names another
store: ``postgresql://`` is the one DESIGN.md provides for, and the place a PostgreSQL store will
plug in; until it exists that value is refused like any other scheme, so a URL can never turn
into a SQLite file with a strange name. Errors never repeat the value of a URL (it may carry a
password), only its scheme.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SqliteFile", "database_location"]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_POSTGRESQL_SCHEMES = frozenset({"postgresql", "postgres"})


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


def database_location(value: str) -> SqliteFile:
    """The store ``value`` names; ``ValueError`` (saying what to set instead) for anything unsupported."""
    text = value.strip()
    if not text:
        raise ValueError("must be a file path for the SQLite database, such as ./secure-export.db")
    match = _SCHEME.match(text)
    if match is None:
        return SqliteFile(text)
    scheme = match.group(1).lower()
    if scheme in _POSTGRESQL_SCHEMES:
        raise ValueError(
            f"{scheme}:// (PostgreSQL) is not supported by this version of secure-export; "
            "use a SQLite file path such as /data/secure-export.db (one replica)"
        )
    raise ValueError(
        f"the URL scheme {scheme}:// is not supported; use a SQLite file path such as /data/secure-export.db"
    )
