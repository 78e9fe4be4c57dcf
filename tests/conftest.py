"""Fixtures for every test package: the event loop of async tests and a real PostgreSQL cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresCluster, running_cluster, unavailable_reason
from tests.support.prerequisites import missing


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests (``pytest.mark.anyio``) run on a stock asyncio loop, one per test, as ``asyncio.run`` gave them.

    anyio's pytest plugin (anyio comes with starlette and httpx) runs them; the receiver itself runs on
    uvloop where installed, which is asyncio's API too (docs/testing.md).
    """
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway cluster for the session; skipped (failed under CI=true) when PostgreSQL is missing."""
    reason = unavailable_reason()
    if reason is not None:
        missing(reason)
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A libpq URL of a fresh, empty database in the session's cluster."""
    return postgres_cluster.url(postgres_cluster.create_database())
