"""Starts a real receiver for tests: uvicorn on 127.0.0.1, real SQLite in ``tmp_path``, real tokens.

Usage::

    from receiver.demo.local_issuer import LocalIssuer
    from tests.receiver.harness import start_receiver, alert_body

    with LocalIssuer() as issuer, start_receiver(tmp_path, issuer) as rx:
        response = rx.post_alert(alert_body(), issuer.mint())
        assert response.status_code == 202
        rx.wait_dispatched()

* In-process (default): the app runs on a thread (:class:`receiver.http.server.BackgroundServer`);
  ``backend=`` may be any :class:`~receiver.itsm.base.Backend` instance (e.g.
  :class:`RecordingBackend`), else the one ``SECURE_EXPORT_ITSM`` selects (embedded).
* ``subprocess=True``: a separate Python process (``python -m tests.receiver.harness``) for crash
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
import copy
import importlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess as _subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from receiver.alerts.events import AlertEvent
from receiver.itsm.base import Backend, PermanentBackendError, TransientBackendError
from receiver.storage.records import WorkItemRef
from receiver.storage.sqlite.inbox import count_by_state

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "SECURE_EXPORT_"
TEST_DEFAULTS: dict[str, str] = {
    "DISPATCH_BACKOFF_BASE_SECONDS": "0.01",
    "DISPATCH_BACKOFF_CAP_SECONDS": "0.2",
    "GRACEFUL_SHUTDOWN_SECONDS": "3",
    "LOG_LEVEL": "INFO",
}
_counter = itertools.count(1)

SUBSCRIPTION = "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"


# --- payloads -------------------------------------------------------------------------------


_BASE_ALERT: dict[str, Any] = {
    "schemaId": "azureMonitorCommonAlertSchema",
    "data": {
        "essentials": {
            "alertId": f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/00000000-0000-0000-0000-000000000001",
            "alertRule": "cpu-high",
            "severity": "Sev2",
            "signalType": "Metric",
            "monitorCondition": "Fired",
            "monitoringService": "Platform",
            "alertTargetIDs": [
                f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-app/providers/microsoft.compute/virtualmachines/vm-app-01"
            ],
            "configurationItems": ["vm-app-01"],
            "originAlertId": f"{SUBSCRIPTION}_rg-app_microsoft.insights_metricAlerts_cpu-high_1",
            "firedDateTime": "2026-11-26T06:00:00.1234567Z",
            "description": "CPU above 90%",
            "essentialsVersion": "1.0",
            "alertContextVersion": "1.0",
        },
        "alertContext": {
            "properties": None,
            "conditionType": "SingleResourceMultipleMetricCriteria",
            "condition": {
                "windowSize": "PT5M",
                "allOf": [
                    {
                        "metricName": "Percentage CPU",
                        "metricNamespace": "Microsoft.Compute/virtualMachines",
                        "operator": "GreaterThan",
                        "threshold": "90",
                        "timeAggregation": "Average",
                        "dimensions": [],
                        "metricValue": 97.5,
                    }
                ],
            },
        },
        "customProperties": None,
    },
}


def alert_body(
    n: int | str = 1,
    condition: str = "Fired",
    *,
    subscription: str = SUBSCRIPTION,
    rule: str = "cpu-high",
    target: str = "vm-app-01",
) -> dict[str, Any]:
    """A valid common-schema metric alert; ``n`` makes the alert id unique."""
    body = copy.deepcopy(_BASE_ALERT)
    essentials = body["data"]["essentials"]
    essentials["alertId"] = f"/subscriptions/{subscription}/providers/Microsoft.AlertsManagement/alerts/test-{n}"
    essentials["monitorCondition"] = condition
    essentials["alertRule"] = rule
    essentials["alertTargetIDs"] = [
        f"/subscriptions/{subscription}/resourcegroups/rg-app/providers/microsoft.compute/virtualmachines/{target}"
    ]
    essentials["configurationItems"] = [target]
    if condition == "Resolved":
        essentials["resolvedDateTime"] = "2026-11-26T06:10:00Z"
    return body


# --- fake backends --------------------------------------------------------------------------


class RecordingBackend(Backend):
    """In-memory backend for tests: records every call; failures can be scripted.

    ``calls`` lists every ``(alert_id, condition)`` passed to ``apply`` (replays included);
    ``applied`` every one that succeeded, in order, duplicates included (``events`` the matching
    :class:`AlertEvent` objects): a dispatcher that applies a row twice, or replays a Fired after
    its Resolved, shows up there, so tests compare exact sequences. ``fail_transient(n)`` makes the next
    ``n`` calls raise :class:`TransientBackendError`; ``outage()``/``recover()`` fail every call
    in between; ``permanent_for`` holds alert ids refused with :class:`PermanentBackendError`.
    """

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.applied: list[tuple[str, str]] = []
        self.events: list[AlertEvent] = []
        self.permanent_for: set[str] = set()
        self.retry_after: float | None = None
        self.delay = 0.0
        self.ready = True
        self.started = False
        self.closed = False
        self._transient_left = 0
        self._down = False
        self._lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent = 0
        self.in_flight_keys: set[str] = set()
        self.overlapping_key = False

    def fail_transient(self, count: int) -> None:
        """The next ``count`` calls fail with a transient error."""
        with self._lock:
            self._transient_left = count

    def outage(self) -> None:
        """Every call fails (transient) until :meth:`recover`."""
        self._down = True

    def recover(self) -> None:
        """End an outage."""
        self._down = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def readiness(self) -> Any:
        from receiver.itsm.base import Readiness

        return Readiness(self.ready, "" if self.ready else "fake backend told to be unready")

    async def apply(self, event: AlertEvent) -> None:
        key = (event.alert_id, str(event.condition))
        with self._lock:
            self.calls.append(key)
            if event.correlation_key in self.in_flight_keys:
                self.overlapping_key = True
            self.in_flight_keys.add(event.correlation_key)
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if event.alert_id in self.permanent_for:
                raise PermanentBackendError(f"refused by the fake ITSM tool: {event.alert_id}")
            with self._lock:
                failing = self._down or self._transient_left > 0
                if self._transient_left > 0:
                    self._transient_left -= 1
            if failing:
                raise TransientBackendError("fake ITSM tool unavailable", retry_after=self.retry_after)
            with self._lock:
                self.applied.append(key)
                self.events.append(event)
        finally:
            with self._lock:
                self.concurrent -= 1
                self.in_flight_keys.discard(event.correlation_key)


class DurableFakeBackend(Backend):
    """Records applications in its own table of the receiver's SQLite file (survives SIGKILL).

    ``fake_backend_calls`` gets one row per ``apply`` call (replays included);
    ``fake_backend_effects`` one row per distinct ``(alert_id, condition)`` — the "work item"
    whose uniqueness the crash test checks. Both are written in one transaction per call.
    """

    name = "durable-fake"

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self._conn: sqlite3.Connection | None = None
        # One thread owns the connection (as in the embedded backend): the dispatcher's workers
        # call apply() concurrently, and one sqlite3 connection must not run two transactions
        # at once ("cannot start a transaction within a transaction"; worse, a thread holding
        # the GIL can wait for the connection's mutex while another thread on it waits out the
        # busy timeout, stalling the whole receiver for up to 10 s).
        self._executor: ThreadPoolExecutor | None = None

    async def _run(self, fn: Callable[[], Any]) -> Any:
        assert self._executor is not None, "start() the backend first"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    @classmethod
    def from_settings(cls, settings: Any) -> DurableFakeBackend:
        """Factory for ``start_receiver(..., subprocess=True, backend="tests.receiver.harness:durable_fake")``."""
        return cls(settings.db)

    async def start(self) -> None:
        def open_() -> None:
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("CREATE TABLE IF NOT EXISTS fake_backend_calls (alert_id TEXT, condition TEXT)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS fake_backend_effects (alert_id TEXT, condition TEXT, "
                "PRIMARY KEY (alert_id, condition))"
            )
            self._conn = conn

        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-fake")
        await self._run(open_)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def close_() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await asyncio.get_running_loop().run_in_executor(executor, close_)  # after any write in flight
        finally:
            executor.shutdown(wait=False)

    async def apply(self, event: AlertEvent) -> None:
        conn = self._conn
        assert conn is not None

        def write() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO fake_backend_calls VALUES (?, ?)", (event.alert_id, str(event.condition)))
            conn.execute(
                "INSERT INTO fake_backend_effects VALUES (?, ?) ON CONFLICT DO NOTHING",
                (event.alert_id, str(event.condition)),
            )
            conn.execute("COMMIT")

        await self._run(write)


def durable_fake(settings: Any) -> DurableFakeBackend:
    """``"tests.receiver.harness:durable_fake"``: a :class:`DurableFakeBackend` on the receiver's DB."""
    return DurableFakeBackend.from_settings(settings)


class RefusingBackend(RecordingBackend):
    """A backend whose configuration is wrong: ``start()`` raises :class:`PermanentBackendError`."""

    name = "refusing"

    async def start(self) -> None:
        raise PermanentBackendError("close code 'Nope' is not a valid choice on this instance")


def refusing_backend(settings: Any) -> RefusingBackend:
    """``"tests.receiver.harness:refusing_backend"``: a backend that refuses to start."""
    return RefusingBackend()


class GatedEmbeddedBackend(Backend):
    """The embedded backend with a kill point the test controls (crash tests).

    The first ``complete`` applications behave normally. Every later one is applied (committed to
    the work-item tables) and then never returns: the dispatcher never confirms its inbox row, so
    the row stays pending although its effect is on disk ("half-applied"), and the rows behind it
    are never attempted. ``complete`` is read from ``<db>.gate`` at start; each half-applied event
    appends its alert id and condition to ``<db>.blocked``, so the test waits for that state (not
    for time to pass) before it sends SIGKILL.
    """

    name = "gated-embedded"

    def __init__(self, db_path: str, complete: int) -> None:
        from receiver.itsm.embedded.store import EmbeddedBackend

        self._inner = EmbeddedBackend(db_path)
        self._blocked_path = Path(db_path + ".blocked")
        self._complete = complete
        self._applied = 0
        self._never = asyncio.Event()

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    async def apply(self, event: AlertEvent) -> WorkItemRef | None:
        ref = await self._inner.apply(event)
        self._applied += 1
        if self._applied <= self._complete:
            return ref
        with self._blocked_path.open("a") as blocked:
            blocked.write(f"{event.alert_id} {event.condition}\n")
        await self._never.wait()  # applied, never confirmed: SIGKILL comes while this waits
        return ref


def gated_embedded(settings: Any) -> GatedEmbeddedBackend:
    """``"tests.receiver.harness:gated_embedded"``: see :class:`GatedEmbeddedBackend`."""
    backend = GatedEmbeddedBackend(str(settings.db), int(Path(str(settings.db) + ".gate").read_text()))
    backend._inner.reopen_window = settings.reopen_window  # as create_backend passes SECURE_EXPORT_REOPEN_WINDOW
    return backend


def read_blocked(db_path: str | Path) -> list[tuple[str, str]]:
    """``(alert_id, condition)`` of the events a :class:`GatedEmbeddedBackend` half-applied."""
    path = Path(str(db_path) + ".blocked")
    lines = path.read_text().splitlines() if path.exists() else []
    return [(alert, condition) for alert, condition in (line.rsplit(" ", 1) for line in lines)]


def read_durable_fake(db_path: str | Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(calls, effects)`` recorded by :class:`DurableFakeBackend` in ``db_path``."""
    conn = sqlite3.connect(str(db_path), timeout=10)
    try:
        calls = conn.execute("SELECT alert_id, condition FROM fake_backend_calls").fetchall()
        effects = conn.execute("SELECT alert_id, condition FROM fake_backend_effects").fetchall()
    except sqlite3.OperationalError:
        calls, effects = [], []
    finally:
        conn.close()
    return calls, effects


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
        """``{"pending", "done", "parked"}`` row counts of the inbox."""
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
    from receiver.settings import load_settings

    settings = load_settings(environ)
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
    argv = [sys.executable, "-m", "tests.receiver.harness"]
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


class ServeLog:
    """The JSON log lines a ``secure-export serve`` child writes to stderr, read on a thread to the end.

    ``serve --port 0`` binds a port the OS picks and logs ``{"event": "listening", "url": ...}``
    once it has started (``ops_listening`` for the ops port): :meth:`url` waits for that line, so a
    test never guesses a free port. Reading to the end keeps the child from blocking on a full pipe.
    """

    def __init__(self, process: _subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None, "start the child with stderr=subprocess.PIPE"
        self._stderr = process.stderr
        self._lines: list[str] = []
        self._urls: dict[str, str] = {}
        self._changed = threading.Condition()
        self._ended = False
        threading.Thread(target=self._read, name="serve-log", daemon=True).start()

    def _read(self) -> None:
        for raw in self._stderr:
            line = raw.decode(errors="replace")
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            with self._changed:
                self._lines.append(line)
                if isinstance(record, dict) and isinstance(record.get("url"), str):
                    self._urls.setdefault(str(record.get("event")), record["url"])
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def url(self, event: str = "listening", timeout: float = 30.0) -> str:
        """The URL logged with ``event``; ``AssertionError`` with the log if it does not come."""
        with self._changed:
            self._changed.wait_for(lambda: event in self._urls or self._ended, timeout)
            found = self._urls.get(event)
        assert found, f"serve did not log {event!r}:\n{self.text()[-2000:]}"
        return found

    def text(self) -> str:
        """Everything logged so far."""
        with self._changed:
            return "".join(self._lines)


def _load_factory(spec: str) -> Callable[[Any], Backend]:
    module_name, _, attr = spec.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory


def _main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a test receiver (settings from SECURE_EXPORT_*).")
    parser.add_argument("--backend", default=None, help="module:factory(settings) of the backend")
    args = parser.parse_args(list(argv) if argv is not None else None)
    from receiver.http.server import run
    from receiver.observability.logs import configure_logging
    from receiver.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    backend = _load_factory(args.backend)(settings) if args.backend else None

    def announce(url: str) -> None:
        sys.stdout.write(f"LISTENING {url}\n")
        sys.stdout.flush()

    return run(settings, host="127.0.0.1", port=0, backend=backend, on_listening=announce)


if __name__ == "__main__":
    raise SystemExit(_main())
