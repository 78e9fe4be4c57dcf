"""Pacing ServiceNow requests under its rate limit, learned from its 429 answers.

The rate and the in-flight limit adapt (additive increase, multiplicative decrease); a refused
request waits ``Retry-After`` with jitter and is sent again. docs/servicenow.md, "Rate limits".
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable

__all__ = ["MIN_LEARNED_RATE", "Pacer"]

MIN_LEARNED_RATE = 5.0
"""Successes in the second before a 429 needed to take them as the instance's rate."""


class Pacer:
    """An adaptive concurrency limit for one ServiceNow instance (one event loop)."""

    def __init__(
        self,
        ceiling: int,
        *,
        cooldown: float = 0.5,
        probe_after: float = 10.0,
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
        self.probe_after = probe_after
        self.rate: float | None = None
        """Requests per second sent at most (learned from 429s); ``None`` until the first 429."""
        self._next_send = float("-inf")
        self._successes: deque[float] = deque()
        self._last_limited = float("-inf")
        self._last_growth = float("-inf")
        self.rate_limited = 0
        """429 answers seen."""

    async def acquire(self) -> None:
        """Wait for a slot under the current limit, and for this request's turn under the learned rate."""
        while self._in_flight >= int(self.limit):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._in_flight += 1
        if self.rate is None:
            return
        now = self._clock()
        self._grow_rate(now)
        turn = max(now, self._next_send)
        self._next_send = turn + 1.0 / self.rate
        if turn > now:
            await asyncio.sleep(turn - now)

    def release(self, *, ok: bool) -> None:
        """Free a slot; ``ok`` (an answer that was not a 429) lets the limit grow."""
        self._in_flight -= 1
        if ok:
            now = self._clock()
            self._successes.append(now)
            while self._successes and now - self._successes[0] > 1.0:
                self._successes.popleft()
            if self.limit < self.ceiling:
                self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        self._wake()

    def rate_limited_once(self) -> None:
        """A 429 came back: lower the limit (once per cooldown, so one burst counts once)."""
        self.rate_limited += 1
        now = self._clock()
        self._last_limited = now
        allowed = float(sum(1 for t in self._successes if now - t <= 1.0))
        # A 429 after only a few requests says little about the rate (a budget spent earlier, a
        # burst of refusals): pacing at that would crawl. Retry-After and the in-flight limit do then.
        if allowed >= MIN_LEARNED_RATE and (self.rate is None or allowed < self.rate):
            self.rate = allowed
        if now - self._last_decrease >= self.cooldown:
            self.limit = max(1.0, self.limit * 0.75)
            self._last_decrease = now

    def _grow_rate(self, now: float) -> None:
        """After ``probe_after`` seconds without a 429, raise the rate by 5 % per second."""
        if self.rate is None or now - self._last_limited < self.probe_after or now - self._last_growth < 1.0:
            return
        self.rate *= 1.05
        self._last_growth = now

    def delay(self, retry_after: float | None) -> float:
        """How long a refused request waits before it is sent again."""
        base = retry_after if retry_after is not None else 1.0
        return base + self._rng() * min(0.25, max(base, 0.05))

    def _wake(self) -> None:
        free = int(self.limit) - self._in_flight
        for waiter in self._waiters[: max(0, free)]:
            if not waiter.done():
                waiter.set_result(None)
