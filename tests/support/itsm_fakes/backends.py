"""Starting an ITSM backend against a stand-in inside an async test, and closing it whatever happens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from receiver.itsm.base import Backend

B = TypeVar("B", bound=Backend)


@asynccontextmanager
async def started(backend: B) -> AsyncIterator[B]:
    """Start ``backend`` (its start-up checks run against the stand-in), yield it, close it on the way out."""
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()
