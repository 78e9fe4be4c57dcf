"""A bounded cache whose entries expire: what the CMDB lookups of both ITSM backends remember."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """Values kept for ``ttl`` seconds; at ``max_entries`` the expired ones go, and if none has, all go."""

    def __init__(self, ttl: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        """The value while it is fresh, else None."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        return None

    def put(self, key: K, value: V) -> None:
        """Remember ``value`` for ``ttl`` seconds."""
        now = self._clock()
        if len(self._entries) >= self._max_entries:
            # Bounded: drop what expired, and if every entry is still fresh, start over.
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
        self._entries[key] = (now + self._ttl, value)

    def forget(self, key: K) -> None:
        """Drop ``key`` (a record that just changed)."""
        self._entries.pop(key, None)
