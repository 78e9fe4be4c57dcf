"""The durable baseline: the baseline's server stack, committing each body to SQLite or PostgreSQL
the plain way before it answers 202 (docs/benchmarks.md, "Inbox stores").

Run: ``python -m bench.durable_baseline --port PORT --db PATH_OR_POSTGRESQL_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.baseline import ACCEPTED_BODY, BaselineSettings

Store = Callable[[bytes], Awaitable[None]]


def _sqlite_store(path: str) -> tuple[Store, Callable[[], None]]:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    writer = ThreadPoolExecutor(max_workers=1)

    def insert(body: bytes) -> None:
        conn.execute("INSERT INTO bodies (body) VALUES (?)", (body,))  # autocommit: one fsync each

    async def store(body: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(writer, insert, body)

    def close() -> None:
        writer.shutdown()
        conn.close()

    return store, close


async def _postgres_store(url: str) -> tuple[Store, Callable[[], Awaitable[None]]]:
    import asyncpg

    pool = await asyncpg.create_pool(url, ssl="require", min_size=10, max_size=10)
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS bodies (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body BYTEA NOT NULL)"
    )

    async def store(body: bytes) -> None:
        await pool.execute("INSERT INTO bodies (body) VALUES ($1)", body)  # autocommit: durable at return

    return store, pool.close


def create_app(db: str) -> Starlette:
    """The durable baseline for ``db`` (an SQLite path or a postgresql:// URL)."""
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if db.startswith("postgresql://"):
            state["store"], close_pg = await _postgres_store(db)
            try:
                yield
            finally:
                await close_pg()
        else:
            state["store"], close = _sqlite_store(db)
            try:
                yield
            finally:
                close()

    async def accept(request: Request) -> Response:
        await state["store"](await request.body())
        return JSONResponse(ACCEPTED_BODY, status_code=202)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/api/alerts", accept, methods=["POST"]), Route("/healthz", healthz)], lifespan=lifespan
    )


def main(argv: list[str] | None = None) -> int:
    """Serve the durable baseline with the uvicorn options the receiver's ``serve`` uses."""
    parser = argparse.ArgumentParser(prog="python -m bench.durable_baseline", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    import uvicorn

    from receiver.http.server import uvicorn_config

    settings = cast("Any", BaselineSettings())
    uvicorn.Server(uvicorn_config(create_app(args.db), host=args.host, port=args.port, settings=settings)).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
