"""An asyncio HTTP/1.1 keep-alive load generator for ``POST /api/alerts``, run in its own process.

Modes ``flat`` (closed loop), ``rate`` (open loop, latency from the scheduled send time) and
``storm`` (deliveries at once, retried as Azure retries); each stops by itself (docs/benchmarks.md).
Usage: ``python -m bench.loadgen SPEC.json RESULT.json`` (see :class:`LoadSpec`).
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from bench.payloads import instance_ids, templates

RETRYABLE_STATUSES = frozenset({408, 429, 503, 504})
"""Statuses Azure Monitor retries a webhook on (plus timeouts and broken connections)."""
clock = time.perf_counter
"""Latency clock: uvloop's ``loop.time()`` ticks in whole milliseconds, too coarse for a 1 ms answer."""
TIMEOUT = 0
"""Status recorded for a request that got no answer within ``timeout`` seconds."""
BROKEN = -1
"""Status recorded for a request whose connection failed."""


class LoadSpec(BaseModel):
    """What one load-generator run does; validated once when the process starts."""

    host: str = "127.0.0.1"
    port: int = Field(gt=0, lt=65536)
    path: str = "/api/alerts"
    tokens: list[str] = Field(min_length=1)
    """Bearer tokens, used round-robin: Azure reuses one token for many calls until it expires."""
    mode: Literal["flat", "rate", "storm"]
    duration: float = Field(default=10.0, gt=0, le=600)
    rate: float = Field(default=100.0, gt=0, le=100_000)
    concurrency: int = Field(default=64, ge=1, le=4096)
    """Connections: fixed for ``flat``/``storm``, the ceiling of the pool for ``rate``."""
    count: int = Field(default=20_000, ge=1, le=1_000_000)
    """``storm`` only: deliveries in all, repeats included."""
    repeat_fraction: float = Field(default=0.10, ge=0, lt=1)
    attempts: int = Field(default=3, ge=1, le=10)
    retry_backoff: float = Field(default=0.5, ge=0, le=30)
    timeout: float = Field(default=10.0, gt=0, le=120)
    """Azure gives a webhook 10 s before it gives up on the call."""
    seed: int = 1
    """Distinct seeds give distinct alert ids, so scenarios against one inbox never collide."""


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads the whole answer."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send ``request``; return the status and whether the connection may be reused."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        start = lowered.find(b"\r\ncontent-length:")
        if start >= 0:
            end = lowered.index(b"\r\n", start + 2)
            length = int(lowered[start + 17 : end])
            if length:
                await self.reader.readexactly(length)
        elif b"transfer-encoding: chunked" in lowered:
            await self._drain_chunked()
        keep = b"\r\nconnection: close" not in lowered
        return status, keep

    async def _drain_chunked(self) -> None:
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            await self.reader.readexactly(size + 2)
            if size == 0:
                return

    def close(self) -> None:
        """Close the socket without waiting."""
        self.writer.close()


class _Pool:
    """Keep-alive connections to one server, at most ``limit`` open; waiters are served FIFO."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self._host, self._port, self._limit = host, port, limit
        self._idle: collections.deque[_Connection] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._open = 0
        self.peak_open = 0

    async def acquire(self) -> _Connection:
        """An idle connection, a new one while under the limit, or the next one released."""
        if self._idle:
            return self._idle.popleft()
        if self._open < self._limit:
            self._open += 1
            self.peak_open = max(self.peak_open, self._open)
            try:
                reader, writer = await asyncio.open_connection(self._host, self._port, limit=1 << 20)
            except BaseException:
                self._open -= 1
                raise
            return _Connection(reader, writer)
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        connection = await waiter
        return connection if connection is not None else await self.acquire()

    def release(self, connection: _Connection, reusable: bool) -> None:
        """Give a connection back; a broken one is closed and its slot handed to a waiter."""
        if not reusable:
            connection.close()
            self._open -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection if reusable else None)
                return
        if reusable:
            self._idle.append(connection)

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.popleft().close()


class LoadGenerator:
    """Runs one :class:`LoadSpec` and returns its raw samples as a JSON-ready dict."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self._templates = templates()
        host_header = f"{spec.host}:{spec.port}"
        self._heads = [
            (
                f"POST {spec.path} HTTP/1.1\r\nHost: {host_header}\r\nAuthorization: Bearer {token}\r\n"
                "Content-Type: application/json\r\nUser-Agent: secure-export-bench\r\nContent-Length: "
            ).encode()
            for token in spec.tokens
        ]

    def _request(self, index: int, instance: str) -> bytes:
        body = self._templates[index % len(self._templates)].render(instance)
        head = self._heads[index % len(self._heads)]
        return b"".join((head, str(len(body)).encode(), b"\r\n\r\n", body))

    async def _send(self, pool: _Pool, request: bytes) -> int:
        """One attempt: the status, or ``TIMEOUT``/``BROKEN``."""
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self.spec.timeout):
                connection = await pool.acquire()
                status, keep = await connection.exchange(request)
        except TimeoutError:
            if connection is not None:
                pool.release(connection, False)
            return TIMEOUT
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            if connection is not None:
                pool.release(connection, False)
            return BROKEN
        pool.release(connection, keep)
        return status

    async def run(self) -> dict[str, object]:
        """Run the spec's mode to completion."""
        spec = self.spec
        pool = _Pool(spec.host, spec.port, spec.concurrency)
        try:
            if spec.mode == "flat":
                result = await self._flat(pool)
            elif spec.mode == "rate":
                result = await self._rate(pool)
            else:
                result = await self._storm(pool)
        finally:
            pool.close()
        result["peak_connections"] = pool.peak_open
        result["spec"] = spec.model_dump(exclude={"tokens"})
        return result

    async def _flat(self, pool: _Pool) -> dict[str, object]:
        spec = self.spec
        rng = random.Random(spec.seed)
        statuses: collections.Counter[int] = collections.Counter()
        latencies: list[float] = []
        accepted: list[str] = []
        start = clock()
        deadline = start + spec.duration
        counter = 0

        async def worker() -> None:
            nonlocal counter
            while clock() < deadline:
                counter += 1
                instance = _uuid4(rng)
                request = self._request(counter, instance)
                sent = clock()
                status = await self._send(pool, request)
                latencies.append(clock() - sent)
                statuses[status] += 1
                if status == 202:
                    accepted.append(instance)

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
        elapsed = clock() - start
        return {
            "mode": "flat",
            "elapsed_s": elapsed,
            "statuses": {str(k): v for k, v in statuses.items()},
            "latencies_s": latencies,
            "accepted_ids": accepted,
        }

    async def _rate(self, pool: _Pool) -> dict[str, object]:
        spec = self.spec
        total = max(1, int(spec.rate * spec.duration))
        ids = instance_ids(total, spec.seed)
        requests = [self._request(i, ids[i]) for i in range(total)]
        latency: list[float] = [0.0] * total
        status: list[int] = [0] * total
        # Wall-clock send times, to compare with the work items' timestamps written by the server.
        mono0, wall0 = clock() + 0.2, time.time() + 0.2
        interval = 1.0 / spec.rate
        tasks: set[asyncio.Task[None]] = set()

        async def one(index: int, scheduled: float) -> None:
            status[index] = await self._send(pool, requests[index])
            latency[index] = clock() - scheduled

        index = 0
        while index < total:
            now = clock()
            # Timers tick in milliseconds, so each wake-up sends every request that is now due.
            while index < total and mono0 + index * interval <= now:
                task = asyncio.get_running_loop().create_task(one(index, mono0 + index * interval))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                index += 1
            if index < total:
                await asyncio.sleep(max(0.0, mono0 + index * interval - clock()))
        if tasks:
            await asyncio.wait(tasks)
        return {
            "mode": "rate",
            "offered_rate": spec.rate,
            "elapsed_s": clock() - mono0,
            "scheduled_wall": [wall0 + i * interval for i in range(total)],
            "ids": ids,
            "statuses": status,
            "latencies_s": latency,
        }

    async def _storm(self, pool: _Pool) -> dict[str, object]:
        spec = self.spec
        repeats = int(spec.count * spec.repeat_fraction)
        distinct = instance_ids(spec.count - repeats, spec.seed)
        rng = random.Random(spec.seed)
        deliveries = distinct + [rng.choice(distinct) for _ in range(repeats)]
        rng.shuffle(deliveries)
        final: list[int] = [0] * len(deliveries)
        attempts_used: list[int] = [0] * len(deliveries)
        latencies: list[float] = []
        next_index = 0
        start_wall, start = time.time(), clock()

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(deliveries):
                index = next_index
                next_index += 1
                request = self._request(index, deliveries[index])
                for attempt in range(1, spec.attempts + 1):
                    sent = clock()
                    result = await self._send(pool, request)
                    latencies.append(clock() - sent)
                    attempts_used[index] = attempt
                    final[index] = result
                    if result not in RETRYABLE_STATUSES and result not in (TIMEOUT, BROKEN):
                        break
                    await asyncio.sleep(spec.retry_backoff * attempt)

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
        answered = clock()
        return {
            "mode": "storm",
            "start_wall": start_wall,
            "answered_s": answered - start,
            "deliveries": len(deliveries),
            "distinct_ids": distinct,
            "accepted_distinct_ids": sorted({deliveries[i] for i, status in enumerate(final) if status == 202}),
            "final_statuses": dict(collections.Counter(str(s) for s in final)),
            "retries": sum(attempts_used) - len(deliveries),
            "latencies_s": latencies,
        }


def _uuid4(rng: random.Random) -> str:
    value = rng.getrandbits(128)
    # Set the version (4) and variant bits like uuid.uuid4 does, without its os.urandom call.
    value = (value & ~(0xF000 << 64)) | (0x4000 << 64)
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def run_load(spec: LoadSpec) -> dict[str, object]:
    """Run ``spec`` on a fresh event loop (uvloop when installed) and return its samples."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover — uvloop is a receiver dependency, absent on Windows
        return asyncio.run(LoadGenerator(spec).run())
    return uvloop.run(LoadGenerator(spec).run())


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.loadgen SPEC.json RESULT.json``: run one load and write its samples."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m bench.loadgen SPEC.json RESULT.json\n")
        return 2
    spec = LoadSpec.model_validate_json(Path(args[0]).read_text())
    result = run_load(spec)
    Path(args[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
