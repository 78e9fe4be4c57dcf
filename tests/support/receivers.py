"""Starts a real receiver for tests: uvicorn on 127.0.0.1, real SQLite in ``tmp_path``, real tokens.

Usage::

    from receiver.demo.local_issuer import LocalIssuer
    from tests.support.alerts import alert_body
    from tests.support.receivers import start_receiver

    with LocalIssuer() as issuer, start_receiver(tmp_path, issuer) as rx:
        response = rx.post_alert(alert_body(), issuer.mint())
        assert response.status_code == 202
        rx.wait_dispatched()

* In-process (default): the app runs on a thread (:class:`receiver.http.server.BackgroundServer`);
  ``backend=`` may be any :class:`~receiver.itsm.base.Backend` instance (e.g.
  :class:`tests.support.backends.RecordingBackend`), else the one ``SECURE_EXPORT_ITSM`` selects.
* ``subprocess=True``: a separate Python process (``python -m tests.support.receivers``) for crash
  tests — ``kill()`` sends SIGKILL, ``stop()`` SIGTERM (graceful). There ``backend`` is ``None``
  (the configured backend) or a ``"module:factory"`` string; the factory gets the settings.
* ``**env``: settings as ``max_body_bytes=2048`` or ``SECURE_EXPORT_MAX_BODY_BYTES="2048"``.
  Tests default to fast dispatch retries (10 ms base, 200 ms cap) and a 3 s graceful shutdown.

Every receiver gets its own database (``tmp_path / "receiver-N.db"`` unless ``db=`` is given, which
is how a crash test restarts on the same file) and a free port chosen by the OS.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import itertools
import json
import os
import signal
import subprocess as _subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from receiver.itsm.base import Backend
from receiver.settings import ReceiverSettings, load_settings
from receiver.storage import is_postgres
from receiver.storage.sqlite.inbox import count_by_state
from tests.support.paths import REPO_ROOT

PREFIX = "SECURE_EXPORT_"
TEST_DEFAULTS: dict[str, str] = {
    "DISPATCH_BACKOFF_BASE_SECONDS": "0.01",
    "DISPATCH_BACKOFF_CAP_SECONDS": "0.2",
    "GRACEFUL_SHUTDOWN_SECONDS": "3",
    "LOG_LEVEL": "INFO",
}
_counter = itertools.count(1)

# --- running receivers ----------------------------------------------------------------------


def receiver_env(tmp_path: Path, issuer: Any, **env: Any) -> dict[str, str]:
    """The ``SECURE_EXPORT_*`` variables of a test receiver trusting ``issuer``."""
    values: dict[str, str] = {
        "TENANT_ID": issuer.tenant_id,
        "AUDIENCES": issuer.audience,
        "JWKS_URI": issuer.jwks_uri,
        "DB": str(Path(tmp_path) / f"receiver-{os.getpid()}-{next(_counter)}.db"),
        **TEST_DEFAULTS,
    }
    client_id = getattr(issuer, "client_id", None)
    if client_id:
        values["AUDIENCES"] = f"{issuer.audience},{client_id}"
    for key, value in env.items():
        name = key.upper()
        name = name[len(PREFIX) :] if name.startswith(PREFIX) else name
        if value is None:
            values.pop(name, None)
        else:
            values[name] = ",".join(value) if isinstance(value, list | tuple | set | frozenset) else str(value)
    return {PREFIX + key: value for key, value in values.items()}


async def _postgres_counts(url: str) -> dict[str, int]:
    import asyncpg

    counts = {"pending": 0, "done": 0, "parked": 0}
    conn = await asyncpg.connect(url, ssl="require")
    try:
        if await conn.fetchval("SELECT to_regclass('inbox') IS NOT NULL"):
            counts.update({r[0]: r[1] for r in await conn.fetch("SELECT state, count(*) FROM inbox GROUP BY state")})
    finally:
        await conn.close()
    return counts


class RunningReceiver:
    """A started receiver: ``url``, ``db_path``, HTTP helpers, ``stop()``/``kill()``."""

    def __init__(
        self,
        url: str,
        db_path: str,
        env: Mapping[str, str],
        *,
        server: Any = None,
        process: _subprocess.Popen[bytes] | None = None,
        backend: Backend | None = None,
        stderr_path: Path | None = None,
    ) -> None:
        self.url = url
        self.db_path = db_path
        self.env = dict(env)
        self.server = server
        self.process = process
        self.backend = backend
        self.stderr_path = stderr_path
        self.client = httpx.Client(base_url=url, timeout=30.0)

    # --- in-process internals
    @property
    def runtime(self) -> Any:
        """The app's ReceiverState (in-process only): inbox, dispatcher, metrics, verifier."""
        return self.server.runtime if self.server is not None else None

    # --- HTTP
    def post_alert(
        self,
        body: Any,
        token: str | None,
        *,
        content_type: str | None = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST ``body`` (a dict is JSON-encoded, bytes/str sent as is) to ``/api/alerts``."""
        if isinstance(body, dict | list):
            content = json.dumps(body).encode()
        elif isinstance(body, str):
            content = body.encode()
        else:
            content = body
        request_headers: dict[str, str] = {}
        if content_type is not None:
            request_headers["content-type"] = content_type
        if token is not None:
            request_headers["authorization"] = f"Bearer {token}"
        request_headers.update(headers or {})
        return self.client.post("/api/alerts", content=content, headers=request_headers)

    def get(self, path: str) -> httpx.Response:
        """GET a path of the receiver."""
        return self.client.get(path)

    def metrics(self) -> str:
        """The ``/metrics`` text."""
        return self.client.get("/metrics").text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    # --- state
    def inbox_counts(self) -> dict[str, int]:
        """``{"pending", "done", "parked"}`` row counts of the inbox (an SQLite file or a PostgreSQL URL)."""
        if is_postgres(self.db_path):
            return asyncio.run(_postgres_counts(self.db_path))
        return count_by_state(self.db_path)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        """Poll ``predicate`` until true; ``AssertionError`` naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")

    def wait_dispatched(self, timeout: float = 30.0) -> dict[str, int]:
        """Wait until no inbox row is pending; returns the final counts."""
        self.wait_until(lambda: self.inbox_counts()["pending"] == 0, timeout, "the inbox to drain")
        return self.inbox_counts()

    # --- lifecycle
    def stop(self, timeout: float = 20.0) -> int | None:
        """Graceful stop (SIGTERM for a subprocess); returns the exit code of a subprocess."""
        self.client.close()
        if self.server is not None:
            self.server.stop()
            return None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except _subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait(5)
        return self.process.returncode if self.process is not None else None

    def kill(self) -> None:
        """SIGKILL the subprocess: no shutdown code runs (crash test)."""
        if self.process is None:
            raise RuntimeError("kill() needs start_receiver(..., subprocess=True)")
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stderr_text(self) -> str:
        """What a subprocess receiver logged (JSON lines)."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path and self.stderr_path.exists() else ""

    def __enter__(self) -> RunningReceiver:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
        elif self.server is not None:
            self.stop()


def start_receiver(
    tmp_path: Path,
    issuer: Any,
    *,
    backend: Backend | str | None = None,
    subprocess: bool = False,
    jwks_clock: Callable[[], float] | None = None,
    **env: Any,
) -> RunningReceiver:
    """Start a receiver trusting ``issuer`` (a :class:`receiver.demo.local_issuer.LocalIssuer`).

    ``jwks_clock`` (in-process only) is the monotonic clock of the app's key cache
    (``JwksCache(clock=...)``), set before the first fetch: a test moves it by hand to cross the
    unknown-kid refetch interval instead of sleeping through it.
    """
    environ = receiver_env(Path(tmp_path), issuer, **env)
    db_path = environ[PREFIX + "DB"]
    if jwks_clock is not None and subprocess:
        raise TypeError("jwks_clock needs an in-process receiver")
    if subprocess:
        return _start_subprocess(Path(tmp_path), environ, db_path, backend)
    if isinstance(backend, str):
        raise TypeError("an in-process receiver takes a Backend instance, not a factory name")
    from receiver.http.server import BackgroundServer

    settings = load_settings(environ, with_backend=backend is None)  # as `serve`: the backend's settings with the rest
    server = BackgroundServer.from_settings(settings, backend=backend)
    if jwks_clock is not None:
        server.runtime.jwks.clock = jwks_clock  # the cache's clock seam (JwksCache.clock), before it first reads it
    server.start()
    return RunningReceiver(server.url, db_path, environ, server=server, backend=backend or server.runtime.backend)


def _start_subprocess(tmp_path: Path, environ: dict[str, str], db_path: str, backend: Any) -> RunningReceiver:
    if backend is not None and not isinstance(backend, str):
        raise TypeError("a subprocess receiver takes a 'module:factory' string as backend")
    env = {key: value for key, value in os.environ.items() if not key.startswith(PREFIX)}
    env.update(environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, "-m", "tests.support.receivers"]
    if backend:
        argv += ["--backend", backend]
    stderr_path = tmp_path / f"receiver-{next(_counter)}.log"
    stderr = stderr_path.open("wb")
    process = _subprocess.Popen(
        argv, env=env, cwd=str(REPO_ROOT), stdout=_subprocess.PIPE, stderr=stderr, stdin=_subprocess.DEVNULL
    )
    stderr.close()
    url = _read_listening_line(process, stderr_path)
    return RunningReceiver(url, db_path, environ, process=process, stderr_path=stderr_path)


def _read_listening_line(process: _subprocess.Popen[bytes], stderr_path: Path, timeout: float = 30.0) -> str:
    assert process.stdout is not None
    found: list[str] = []

    def reader() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("LISTENING "):
                found.append(line.split(" ", 1)[1])
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        log = stderr_path.read_text(errors="replace")[-4000:] if stderr_path.exists() else ""
        raise RuntimeError(f"the receiver subprocess did not start (exit {process.returncode}):\n{log}")
    return found[0]


# --- subprocess entry point -----------------------------------------------------------------


def _load_factory(spec: str) -> Callable[[ReceiverSettings], Backend]:
    module_name, _, attr = spec.partition(":")
    factory: Callable[[ReceiverSettings], Backend] = getattr(importlib.import_module(module_name), attr)
    return factory


def _main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a test receiver (settings from SECURE_EXPORT_*).")
    parser.add_argument("--backend", default=None, help="module:factory(settings) of the backend")
    args = parser.parse_args(list(argv) if argv is not None else None)
    from receiver.http.server import run
    from receiver.observability.logs import configure_logging

    settings = load_settings(with_backend=args.backend is None)  # as `serve`: the backend's settings with the rest
    configure_logging(settings.log_level)
    backend = _load_factory(args.backend)(settings) if args.backend else None

    def announce(url: str) -> None:
        sys.stdout.write(f"LISTENING {url}\n")
        sys.stdout.flush()

    return run(settings, host="127.0.0.1", port=0, backend=backend, on_listening=announce)


if __name__ == "__main__":
    raise SystemExit(_main())
