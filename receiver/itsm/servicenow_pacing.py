"""Pacing ServiceNow requests under its rate limit: how many may be in flight, learned from 429s.

ServiceNow's rate limit rules answer 429 with ``Retry-After`` once a user's request budget is spent.
Retrying each refused request on its own after ``Retry-After`` keeps nothing from being lost, but
with the dispatcher's full concurrency most requests would be refused and resent. So the number of
requests in flight adapts (additive increase, multiplicative decrease, as TCP does): each success
raises the limit by ``1/limit``, a 429 lowers it by a quarter (at most once per ``cooldown``), never
below one. The refused request itself waits ``Retry-After`` (plus a little jitter, so the refused
ones do not return in one burst) and is sent again, without costing the inbox row an attempt, until
``max_wait`` seconds of waiting are spent; then the dispatcher's own retry takes over.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

__all__ = ["Pacer"]


class Pacer:
    """An adaptive concurrency limit for one ServiceNow instance (one event loop)."""

    def __init__(
        self,
        ceiling: int,
        *,
        cooldown: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = float(self.ceiling)
        """Requests allowed in flight now (fractional: grows by 1/limit per success)."""
        self.cooldown = cooldown
        self._clock = clock
        self._rng = rng
        self._in_flight = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._last_decrease = float("-inf")
        self.rate_limited = 0
        """429 answers seen."""

    async def acquire(self) -> None:
        """Wait for a slot under the current limit."""
        while self._in_flight >= int(self.limit):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._in_flight += 1

    def release(self, *, ok: bool) -> None:
        """Free a slot; ``ok`` (an answer that was not a 429) lets the limit grow."""
        self._in_flight -= 1
        if ok and self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        self._wake()

    def rate_limited_once(self) -> None:
        """A 429 came back: lower the limit (once per cooldown, so one burst counts once)."""
        self.rate_limited += 1
        now = self._clock()
        if now - self._last_decrease >= self.cooldown:
            self.limit = max(1.0, self.limit * 0.75)
            self._last_decrease = now

    def delay(self, retry_after: float | None) -> float:
        """How long a refused request waits before it is sent again."""
        base = retry_after if retry_after is not None else 1.0
        return base + self._rng() * min(0.25, max(base, 0.05))

    def _wake(self) -> None:
        free = int(self.limit) - self._in_flight
        for waiter in self._waiters[: max(0, free)]:
            if not waiter.done():
                waiter.set_result(None)
