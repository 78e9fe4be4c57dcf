"""Schema migrations on PostgreSQL: replicas starting together apply each version exactly once."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from receiver.storage.postgres.schema import MIGRATIONS, SchemaTooNew, migrate

pytestmark = pytest.mark.anyio


async def test_replicas_migrating_at_once_apply_each_version_once(postgres_url: str) -> None:
    conns = [await asyncpg.connect(postgres_url, ssl="require") for _ in range(6)]
    try:
        applied = await asyncio.gather(*(migrate(conn) for conn in conns))
        versions = [version for version, _ in MIGRATIONS]
        # Exactly one replica applied each version; the others found it done.
        assert sorted(v for one in applied for v in one) == versions
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == versions
        assert await migrate(conns[0]) == []  # a restart applies nothing
    finally:
        for conn in conns:
            await conn.close()


async def test_a_database_of_a_newer_version_is_refused(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url, ssl="require")
    try:
        await migrate(conn)
        await conn.execute("INSERT INTO schema_migrations (version) VALUES (999)")
        with pytest.raises(SchemaTooNew, match="999"):
            await migrate(conn)
        # The migration lock was released: another session can take it at once.
        assert await conn.fetchval("SELECT pg_try_advisory_lock(x'5EC00001'::bigint)") is True
    finally:
        await conn.close()
