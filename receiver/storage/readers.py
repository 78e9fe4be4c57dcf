"""Read-only access for the CLI on either store, picked by the ``--db`` value: parked deliveries, errors.

For PostgreSQL the authentication follows ``SECURE_EXPORT_DB_AUTH`` like the receiver's. The
embedded backend's listings are :mod:`receiver.itsm.embedded.queries`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from receiver.storage import is_postgres
from secure_export.contract import ENV_DB_AUTH

if TYPE_CHECKING:
    from receiver.storage.postgres.connect import DbAuth


def db_auth() -> DbAuth:
    """``SECURE_EXPORT_DB_AUTH`` for the operators' commands: ``entra``, else ``password`` (as the connection takes it).

    The one reading of the variable outside ``serve`` (whose :class:`~receiver.settings.ReceiverSettings` validates it).
    """
    return "entra" if os.environ.get(ENV_DB_AUTH, "").strip().lower() == "entra" else "password"


def list_parked(db: str) -> list[dict[str, Any]]:
    """Parked inbox rows, oldest first (see :func:`receiver.storage.sqlite.inbox.list_parked`)."""
    if not is_postgres(db):
        from receiver.storage.sqlite.inbox import list_parked as from_sqlite

        return from_sqlite(db)

    async def read() -> list[dict[str, Any]]:
        from receiver.storage.postgres.connect import Database

        conn = await Database(db, auth=db_auth()).connect()
        try:
            if await conn.fetchval("SELECT to_regclass('inbox') IS NULL"):
                return []
            rows = await conn.fetch(
                "SELECT id, alert_id, monitor_condition, attempts, last_error, received_at, parked_at "
                "FROM inbox WHERE state = 'parked' ORDER BY id"
            )
        finally:
            await conn.close()
        return [dict(row) for row in rows]

    return asyncio.run(read())


def read_postgres(prog: str, db: str, show: Callable[[], None]) -> int:
    """Run a listing against PostgreSQL; an unreachable or refusing database is a message and exit 1."""
    from receiver.storage.postgres.connect import DatabaseUrlError, connection_errors, redact

    try:
        show()
    except DatabaseUrlError as error:
        sys.stderr.write(f"{prog}: {redact(db)}: {error}\n")
        return 1
    except connection_errors() as error:
        sys.stderr.write(
            f"{prog}: cannot read the PostgreSQL database {redact(db)}: {error or type(error).__name__}; "
            "check --db / $SECURE_EXPORT_DB and $SECURE_EXPORT_DB_AUTH\n"
        )
        return 1
    return 0
