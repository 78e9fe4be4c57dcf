"""The adaptive in-flight limit for ServiceNow requests under a rate limit."""

from __future__ import annotations

import asyncio

from receiver.itsm.servicenow_pacing import Pacer


def test_a_429_lowers_the_limit_once_per_cooldown_and_successes_raise_it_back() -> None:
    now = [0.0]
    pacer = Pacer(8, cooldown=0.5, clock=lambda: now[0], rng=lambda: 0.0)
    pacer.rate_limited_once()
    pacer.rate_limited_once()  # the same burst: counted, not lowered twice
    assert (pacer.limit, pacer.rate_limited) == (6.0, 2)
    for _ in range(30):
        now[0] += 1
        pacer.rate_limited_once()
    assert pacer.limit == 1.0  # never below one request in flight

    async def successes() -> None:
        for _ in range(200):
            await pacer.acquire()
            pacer.release(ok=True)

    asyncio.run(successes())
    assert pacer.limit == 8.0  # back to the ceiling, and not beyond


def test_acquire_waits_for_a_free_slot_under_the_limit() -> None:
    async def scenario() -> list[str]:
        pacer = Pacer(2)
        order: list[str] = []
        await pacer.acquire()
        await pacer.acquire()

        async def third() -> None:
            await pacer.acquire()
            order.append("third in")
            pacer.release(ok=True)

        task = asyncio.create_task(third())
        await asyncio.sleep(0.01)
        order.append("first out")
        pacer.release(ok=True)
        await task
        pacer.release(ok=True)
        return order

    assert asyncio.run(scenario()) == ["first out", "third in"]


def test_a_refused_request_waits_retry_after_plus_a_little_jitter() -> None:
    pacer = Pacer(4, rng=lambda: 1.0)
    assert pacer.delay(2.0) == 2.25
    assert pacer.delay(None) == 1.25
    assert Pacer(4, rng=lambda: 0.0).delay(3.0) == 3.0
