"""Server processes under test: the receiver (``secure-export serve``) and the baseline.

Each runs in its own process so that the load generator (another process) and the server each
get a core of the 2-core machine instead of sharing one event loop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn with several workers forks children)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending.extend(int(child) for child in children)
    return found


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ServerProcess:
    """One server subprocess on 127.0.0.1, started with ``argv`` and ``env``; waits until healthy."""

    def __init__(self, name: str, argv: list[str], port: int, env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8123``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None, "server not started"
        return self.process.pid

    def start(self, ready_path: str = "/healthz", timeout: float = 60.0) -> None:
        """Start the process and wait until ``ready_path`` answers 200 (or fail with its log)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before it was ready; "
                    f"its output:\n{self.log_path.read_text(errors='replace')[-4000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {ready_path} within {timeout:.0f} s; see {self.log_path}")

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, str]:
        """A GET on the server (for ``/metrics`` and ``/readyz``)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def peak_rss_bytes(self) -> int:
        """Peak resident set size so far (``VmHWM``), summed over the process and its workers."""
        return sum(_status_kib(pid, "VmHWM") for pid in _process_tree(self.pid)) * 1024

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def baseline_process(log_dir: Path) -> ServerProcess:
    """The baseline server (see :mod:`bench.baseline`) on a free port."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.baseline", "--host", "127.0.0.1", "--port", str(port)]
    return ServerProcess("baseline", argv, port, os.environ, log_dir / "baseline.log")


def receiver_process(log_dir: Path, settings_env: Mapping[str, str], variant: str | None = None) -> ServerProcess:
    """``secure-export serve`` on a free port with ``SECURE_EXPORT_*`` settings from ``settings_env``.

    ``variant`` runs it through :mod:`bench.receiver_variants` with part of its work switched off.
    """
    port = free_port()
    launcher = ["secure_export.cli"] if variant is None else ["bench.receiver_variants", variant]
    argv = [sys.executable, "-m", *launcher, "serve", "--host", "127.0.0.1", "--port", str(port)]
    env = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_EXPORT_")}
    env.update(settings_env)
    name = "receiver" if variant is None else f"receiver-{variant}"
    return ServerProcess(name, argv, port, env, log_dir / f"{name}.log")
