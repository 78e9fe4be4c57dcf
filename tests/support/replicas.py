"""Receiver replicas as operators run them: ``secure-export serve`` child processes on one database.

A :class:`Replica` is a real process on its own loopback port; :func:`deliver` posts a delivery
the way Azure does (retrying 503s and broken connections, on whichever replica answers).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from receiver.demo.local_issuer import LocalIssuer
from tests.support.alerts import alert_body
from tests.support.postgres import free_port


def replica_env(issuer: LocalIssuer, db: str, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_EXPORT_")}
    env.update(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES=",".join(issuer.audiences),
        SECURE_EXPORT_JWKS_URI=issuer.jwks_uri,
        SECURE_EXPORT_DB=db,
        SECURE_EXPORT_DISPATCH_BACKOFF_BASE_SECONDS="0.05",
        SECURE_EXPORT_DISPATCH_BACKOFF_CAP_SECONDS="0.5",
        SECURE_EXPORT_GRACEFUL_SHUTDOWN_SECONDS="2",
    )
    env.update(extra)
    return env


@dataclass
class Replica:
    """One ``secure-export serve`` process; :meth:`start` again after :meth:`kill` reuses the port."""

    env: dict[str, str]
    workdir: Path
    name: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> Replica:
        self.starts += 1
        log = (self.workdir / f"{self.name}-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "secure_export.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process is not None and self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"{self.name} did not become ready:\n{self.log()}"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no draining (a crash, an evicted container)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait (graceful); returns the exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return None

    def log(self) -> str:
        logs = sorted(self.workdir.glob(f"{self.name}-*.log"))
        return "\n".join(path.read_text(errors="replace")[-4000:] for path in logs[-2:])

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text


def deliver(
    replicas: list[Replica],
    issuer: LocalIssuer,
    body: bytes,
    *,
    first: int = 0,
    timeout: float = 90,
    statuses: list[int] | None = None,
) -> int:
    """POST ``body`` until a replica answers 202 (as Azure retries 503 and failed connections).

    Starts with ``replicas[first]`` and moves on to the next replica after each failure; returns
    the index of the replica that accepted. ``statuses`` collects every non-202 status seen.
    """
    deadline = time.monotonic() + timeout
    index = first
    token = issuer.mint()
    while True:
        replica = replicas[index % len(replicas)]
        try:
            response = httpx.post(
                f"{replica.url}/api/alerts",
                content=body,
                timeout=10,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            if response.status_code == 202:
                return index % len(replicas)
            assert response.status_code == 503, (response.status_code, response.text)
            assert "retry-after" in response.headers, response.headers
            if statuses is not None:
                statuses.append(response.status_code)
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "no replica accepted the delivery in time"
        index += 1
        time.sleep(0.02 + random.random() * 0.05)


def wait_until(condition: Callable[[], object], timeout: float, message: str | Callable[[], str]) -> None:
    """Poll ``condition`` every 0.2 s until it is true; fails with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(0.2)


async def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    import asyncpg

    conn = await asyncpg.connect(url, ssl="require")
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows ``sql`` returns from the database at ``url`` (a libpq URL; TLS required)."""
    return asyncio.run(_query(url, sql))


def burst(replicas: list[Replica], issuer: LocalIssuer, alerts: range, statuses: list[int]) -> set[int]:
    """Each alert: Fired on one replica (sometimes retried on the other), then Resolved on the other.

    Every alert watches its own VM: alerts of one rule and targets may rightly share a work item
    (the embedded backend reopens a Resolved one within SECURE_EXPORT_REOPEN_WINDOW), and these
    scenarios count one work item per alert.
    """

    def body(n: int, condition: str) -> bytes:
        return json.dumps(alert_body(n, condition, target=f"vm-replica-{n:04d}")).encode()

    def one(n: int) -> None:
        rng = random.Random(n)
        first = rng.randrange(2)
        accepted = deliver(replicas, issuer, body(n, "Fired"), first=first, statuses=statuses)
        taken.add(accepted)
        if rng.random() < 0.3:  # Azure retried a delivery whose 202 it did not see
            taken.add(deliver(replicas, issuer, body(n, "Fired"), first=accepted + 1, statuses=statuses))
        taken.add(deliver(replicas, issuer, body(n, "Resolved"), first=accepted + 1, statuses=statuses))

    taken: set[int] = set()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(one, n) for n in alerts]:
            future.result()
    return taken
