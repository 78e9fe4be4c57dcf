"""Graceful shutdown: a request in flight when shutdown starts still gets its 202 and is stored."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from receiver.demo.local_issuer import LocalIssuer
from receiver.storage.sqlite.inbox import count_by_state
from tests.support.alerts import alert_body
from tests.support.backends import RecordingBackend
from tests.support.receivers import start_receiver


def _refuses_connections(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return True
    return False


def _read_response(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_in_flight_request_completes_during_shutdown(tmp_path: Path, issuer: LocalIssuer) -> None:
    rx = start_receiver(tmp_path, issuer, backend=RecordingBackend(), graceful_shutdown_seconds=10)
    host, port = rx.url.removeprefix("http://").split(":")
    body = json.dumps(alert_body("in-flight")).encode()
    head = (
        f"POST /api/alerts HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {issuer.mint()}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(head + body[:40])
        # The request is now being handled: its headers are in, its body is not complete.
        rx.wait_until(lambda: rx.runtime.in_flight >= 1, 10, "the request to be in flight")
        rx.server.request_stop()
        # Shutdown has begun: no new connections are accepted...
        rx.wait_until(lambda: _refuses_connections(host, int(port)), 10, "the listener to close")
        # ...but the request in flight finishes normally.
        sock.sendall(body[40:])
        answer = _read_response(sock)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
    assert b'"status":"accepted"' in answer
    rx.stop()
    counts = count_by_state(rx.db_path)
    assert counts["pending"] + counts["done"] == 1


def test_sigterm_lets_the_subprocess_finish_and_exit_0(tmp_path: Path, issuer: LocalIssuer) -> None:
    db = str(tmp_path / "term.db")
    rx = start_receiver(tmp_path, issuer, subprocess=True, db=db, backend="tests.support.backends:durable_fake")
    host, port = rx.url.removeprefix("http://").split(":")
    body = json.dumps(alert_body("term")).encode()
    head = (
        f"POST /api/alerts HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {issuer.mint()}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(head + body[:40])
        # In flight: the partial request, plus the /metrics scrape that counts itself.
        rx.wait_until(
            lambda: rx.metric("secure_export_http_requests_in_flight") >= 2, 10, "the request to be in flight"
        )
        assert rx.process is not None
        rx.process.terminate()
        rx.wait_until(lambda: _refuses_connections(host, int(port)), 10, "the listener to close")
        sock.sendall(body[40:])
        answer = _read_response(sock)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
    assert rx.process.wait(20) == 0
    counts = count_by_state(db)
    assert counts["pending"] + counts["done"] == 1
