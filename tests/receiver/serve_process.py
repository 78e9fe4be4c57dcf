"""``secure-export serve`` as a child process, the way a user runs it: started, awaited, stopped by SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port the OS reports free right now (serve binds the port it is given)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_process(
    env: dict[str, str], port: int, cwd: Path, *, ready_url: str | None = None, timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``secure-export serve`` on 127.0.0.1:``port`` until the block ends; wait for ``/readyz`` 200 first.

    ``ready_url`` is the readiness URL to poll (default the main port's). On leaving, SIGTERM; the
    exit status is asserted to be 0 when the block itself did not fail.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "secure_export.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    failed = False
    try:
        url = ready_url or f"http://127.0.0.1:{port}/readyz"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.05)
        yield process
    except BaseException:
        failed = True
        raise
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
        if not failed:
            assert code == 0, process.stderr.read().decode() if process.stderr else ""
