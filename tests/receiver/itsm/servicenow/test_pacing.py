"""The adaptive in-flight limit for ServiceNow requests under a rate limit."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from receiver.itsm.servicenow.pacing import Pacer

pytestmark = pytest.mark.anyio


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
    grows = Pacer(8)
    grows.limit = 1.0
    for _ in range(200):
        grows._in_flight += 1
        grows.release(ok=True)
    assert grows.limit == 8.0  # back to the ceiling, and not beyond


async def test_the_rate_is_learned_from_a_429_and_requests_are_then_spaced_evenly() -> None:
    now = [100.0]
    pacer = Pacer(8, clock=lambda: now[0], probe_after=10.0)
    for step in range(25):  # 25 successes within the last second
        now[0] = 100.0 + step * 0.03
        pacer._in_flight += 1
        pacer.release(ok=True)
    now[0] = 100.8
    pacer.rate_limited_once()
    assert pacer.rate == 25.0
    sent: list[float] = []

    async def send(count: int) -> None:
        for _ in range(count):
            await pacer.acquire()
            sent.append(pacer._next_send)
            pacer.release(ok=True)

    await send(5)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(sent)]
    assert gaps == [0.04] * 4  # one request per 1/25 s
    now[0] += 11.0  # ten seconds without a 429: the rate is probed upwards
    await send(1)
    assert pacer.rate == 25.0 * 1.05


def test_a_429_after_a_few_requests_teaches_no_rate() -> None:
    now = [100.0]
    pacer = Pacer(8, clock=lambda: now[0])
    for _ in range(2):
        pacer._in_flight += 1
        pacer.release(ok=True)
    pacer.rate_limited_once()
    assert pacer.rate is None  # two successes say nothing about the instance's rate: no crawling at 2/s


async def test_acquire_waits_for_a_free_slot_under_the_limit() -> None:
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
    assert order == ["first out", "third in"]


def test_a_refused_request_waits_retry_after_plus_a_little_jitter() -> None:
    pacer = Pacer(4, rng=lambda: 1.0)
    assert pacer.delay(2.0) == 2.25
    assert pacer.delay(None) == 1.25
    assert Pacer(4, rng=lambda: 0.0).delay(3.0) == 3.0
