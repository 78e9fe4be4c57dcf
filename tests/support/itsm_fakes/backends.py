"""Running an ITSM backend against a stand-in from a plain (synchronous) test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from receiver.itsm.base import Backend

B = TypeVar("B", bound=Backend)
T = TypeVar("T")


def with_started(build: Callable[[], B], body: Callable[[B], Awaitable[T]]) -> T:
    """Build a backend inside a fresh event loop, start it, run ``body`` with it, close it."""

    async def main() -> T:
        backend = build()
        await backend.start()
        try:
            return await body(backend)
        finally:
            await backend.close()

    return asyncio.run(main())
