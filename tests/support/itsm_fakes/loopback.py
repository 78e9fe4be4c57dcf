"""A loopback HTTP server for an ITSM stand-in: lifecycle, request recording and injected faults.

A stand-in subclasses :class:`LoopbackFake` and answers in :meth:`LoopbackFake.handle`; faults
(status codes, outages, slow answers, connections dropped before or after the request took effect)
work the same for every stand-in, each answering a fault in its tool's own format.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, dict[str, str], bytes]
"""``(status, headers, body)``."""


@dataclass
class Fault:
    """One injected misbehaviour; ``remaining=None`` lasts until removed (an outage)."""

    kind: str
    """``status``, ``drop`` (before processing), ``drop_after`` (processed, answer lost) or ``delay``."""
    status: int = 503
    retry_after: str | None = None
    seconds: float = 0.0
    remaining: int | None = 1
    path_prefix: str = "/"
    method: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        if self.remaining is not None and self.remaining <= 0:
            return False
        return path.startswith(self.path_prefix) and (self.method is None or self.method == method)


@dataclass
class RecordedRequest:
    """A request as the fake saw it (for assertions about what the client sent)."""

    method: str
    path: str
    params: dict[str, str]
    body: Any
    status: int
    auth: str = ""


class LoopbackFake:
    """Serves on a free 127.0.0.1 port in a daemon thread; use as a context manager."""

    thread_name = "fake-itsm"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on a free loopback port and serve in a daemon thread."""
        handler = type("Handler", (FakeHandler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- faults ------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        """Add a fault; it applies to the next matching requests."""
        with self._lock:
            self.faults.append(fault)
            return fault

    def rate_limit(self, times: int, *, retry_after: int | str = 1, path_prefix: str = "/api/") -> Fault:
        """The next ``times`` API requests get 429 with ``Retry-After``."""
        return self.inject(Fault("status", 429, retry_after=str(retry_after), remaining=times, path_prefix=path_prefix))

    def start_outage(self, status: int = 503, *, retry_after: str | None = None, path_prefix: str = "/") -> Fault:
        """Every request fails with ``status`` until :meth:`end_outage`."""
        return self.inject(Fault("status", status, retry_after=retry_after, remaining=None, path_prefix=path_prefix))

    def end_outage(self) -> None:
        """End every outage started by :meth:`start_outage`."""
        with self._lock:
            self.faults = [f for f in self.faults if f.remaining is not None]

    def drop_next(
        self, times: int = 1, *, after_processing: bool = False, method: str | None = None, path_prefix: str = "/api/"
    ) -> Fault:
        """Close the connection without an answer, before or after the request took effect."""
        kind = "drop_after" if after_processing else "drop"
        return self.inject(Fault(kind, remaining=times, method=method, path_prefix=path_prefix))

    def slow_next(self, times: int, seconds: float, *, path_prefix: str = "/api/") -> Fault:
        """Delay the next answers by ``seconds``."""
        return self.inject(Fault("delay", seconds=seconds, remaining=times, path_prefix=path_prefix))

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first fault matching a request, used up by one."""
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    fault.hits += 1
                    return fault
            return None

    def record(self, request: RecordedRequest) -> None:
        """Keep a request for later assertions."""
        with self._lock:
            self.requests.append(request)

    # -- what a stand-in defines -------------------------------------------------------------

    def handle(self, method: str, path: str, params: dict[str, str], headers: dict[str, str], raw: bytes) -> Answer:
        """Answer one request (called from the server threads)."""
        raise NotImplementedError

    def fault_answer(self, fault: Fault) -> Answer:
        """The answer of an injected ``status`` fault, in the tool's own format."""
        raise NotImplementedError

    def before_answer(self, path: str, fault: Fault | None) -> Fault | None:
        """A last say on the fault of a request (a rate limit the stand-in models itself); default: none."""
        return fault


class FakeHandler(BaseHTTPRequestHandler):
    """Turns HTTP requests into :meth:`LoopbackFake.handle` calls, with the injected faults applied."""

    fake: LoopbackFake
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: without it, delayed ACKs stall each answer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        fault = self.fake.before_answer(parts.path, self.fake.take_fault(method, parts.path))
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "drop":
            self._drop(method, parts.path, params, raw)
            return
        if fault is not None and fault.kind == "status":
            status, extra, body = self.fake.fault_answer(fault)
        else:
            status, extra, body = self.fake.handle(method, parts.path, params, headers, raw)
        try:
            parsed: Any = (
                json.loads(raw) if raw and "json" in headers.get("content-type", "") else raw.decode(errors="replace")
            )
        except ValueError:
            parsed = raw.decode(errors="replace")
        scheme = headers.get("authorization", "").partition(" ")[0]
        self.fake.record(RecordedRequest(method, parts.path, params, parsed, status, scheme))
        if fault is not None and fault.kind == "drop_after":
            self._drop(method, parts.path, params, raw, recorded=True)
            return
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _drop(self, method: str, path: str, params: dict[str, str], raw: bytes, *, recorded: bool = False) -> None:
        if not recorded:
            self.fake.record(RecordedRequest(method, path, params, raw.decode(errors="replace"), 0))
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
