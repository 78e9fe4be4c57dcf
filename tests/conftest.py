"""Fixtures for every test package: the event loop of async tests and a real PostgreSQL cluster."""

from __future__ import annotations

import asyncio
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


@pytest.fixture(autouse=True)
def _main_thread_event_loop(request: pytest.FixtureRequest) -> None:
    """Give a synchronous test a current event loop when an earlier async test left none.

    anyio's runner (like ``asyncio.run``) leaves the main thread without one, and Pulumi's SDK
    (``Output``, secrets, mocks) asks for the current loop; whether a test passed must not depend
    on which test ran before it.
    """
    if request.node.get_closest_marker("anyio") is not None:
        return
    policy = asyncio.get_event_loop_policy()
    try:
        loop = policy.get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        policy.set_event_loop(policy.new_event_loop())


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
