"""Running the app with uvicorn: ``secure-export serve``, the ops port, and a background server for tests.

docs/internals.md explains the event loop and shutdown choices.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Literal

import uvicorn

from receiver.settings import ReceiverSettings, SettingsError, load_settings
from secure_export.contract import RECEIVER_PORT

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2
SWITCH_INTERVAL_SECONDS = 0.001


class _Server(uvicorn.Server):
    """uvicorn's server, but a handled SIGTERM/SIGINT ends in a normal return (exit code 0).

    uvicorn re-raises the captured signal after shutting down, which makes the process die "by
    signal"; ``serve()`` promises an exit code instead, so the handlers only request the
    (graceful) exit — a second signal forces it, as in uvicorn.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _OpsServer(uvicorn.Server):
    """The ops port's server: no signal handlers of its own; it stops when the main server has."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _loop_bound_config(app: Any, *, lifespan: Literal["auto", "on", "off"], graceful: float) -> uvicorn.Config:
    """uvicorn's configuration for a server run on an event loop the caller owns (``loop="none"``)."""
    return uvicorn.Config(
        app,
        http="httptools",
        loop="none",
        lifespan=lifespan,
        access_log=False,
        log_config=None,
        server_header=False,
        # uvicorn annotates int but waits with asyncio.wait_for, which takes fractions of a second.
        timeout_graceful_shutdown=graceful,  # type: ignore[arg-type]
    )


async def _serve_with_ops(
    server: uvicorn.Server,
    sock: socket.socket,
    ops: uvicorn.Server | None,
    ops_sock: socket.socket | None,
    started: Callable[[], None],
) -> None:
    """Serve the main app; once it has started (lifespan done), the ops app beside it until it stops."""
    serving = asyncio.ensure_future(_serve_until_exit(server, sock))
    while not server.started and not serving.done():
        await asyncio.sleep(0.005)
    ops_serving = None
    if server.started and ops is not None and ops_sock is not None:
        ops_serving = asyncio.ensure_future(ops.serve(sockets=[ops_sock]))
        while not ops.started and not ops_serving.done():
            await asyncio.sleep(0.005)
    started()
    try:
        await serving
    finally:
        if ops_serving is not None and ops is not None:
            ops.should_exit = True
            await ops_serving


def _loop_option() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def uvicorn_config(app: Any, *, host: str, port: int, settings: ReceiverSettings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration every receiver runs with (also mirrored by ``bench/``)."""
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "http": "httptools",
        "loop": _loop_option(),
        "lifespan": "on",
        "access_log": False,
        "log_config": None,
        "server_header": False,
        # The receiver reads neither the client address nor the scheme, so X-Forwarded-* rewriting
        # would only cost every request a middleware hop.
        "proxy_headers": False,
        "timeout_graceful_shutdown": settings.graceful_shutdown_seconds,
        "timeout_keep_alive": 75,  # longer than Azure's connection reuse; avoids reconnect churn
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def _build_app(settings: ReceiverSettings, backend: Any = None) -> Any:
    from receiver.http.app import create_app

    return create_app(settings, backend=backend)


def run(
    settings: ReceiverSettings,
    *,
    host: str = "127.0.0.1",
    port: int = RECEIVER_PORT,
    backend: Any = None,
    sock: socket.socket | None = None,
    ops_sock: socket.socket | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT in this (main) thread; returns the process exit code.

    With ``SECURE_EXPORT_OPS_PORT`` set, the operations app is served on ``ops_sock`` (bound to
    ``host`` and that port when not given) by a second uvicorn server in the same loop.
    """
    # The inbox writer thread must get the GIL back quickly after each SQLite call while the event
    # loop is busy; the default switch interval would be added to every commit.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    app = _build_app(settings, backend)
    config = uvicorn_config(app, host=host, port=port, settings=settings)
    server = _Server(config)
    if sock is None:
        sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{_url_host(bound_host)}:{bound_port}"
    ops_app = getattr(app.state, "ops_app", None)
    ops: uvicorn.Server | None = None
    if ops_app is not None and settings.ops_port is not None:
        if ops_sock is None:
            ops_sock = _bind(host, settings.ops_port)
        ops = _OpsServer(_loop_bound_config(ops_app, lifespan="off", graceful=settings.graceful_shutdown_seconds))

    def started() -> None:
        if not server.started:
            return
        log.info("receiver listening", extra={"event": "listening", "url": url})
        if ops_sock is not None:
            ops_host, ops_port = ops_sock.getsockname()[:2]
            log.info(
                "operations listening",
                extra={"event": "ops_listening", "url": f"http://{_url_host(ops_host)}:{ops_port}"},
            )
        if on_listening is not None:
            on_listening(url)

    async def main() -> None:
        await _serve_with_ops(server, sock, ops, ops_sock, started)

    try:
        with _quiet_startup_failure(), asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if ops_sock is not None:
            ops_sock.close()
    if server.started:
        return EXIT_OK
    # The lifespan logged why, as one line; a database that cannot be opened is configuration.
    error = getattr(getattr(getattr(app, "state", None), "receiver", None), "startup_error", None)
    from receiver.storage.records import InboxOpenError

    return EXIT_BAD_CONFIG if isinstance(error, InboxOpenError) else EXIT_FAILED


async def _serve_until_exit(server: uvicorn.Server, sock: socket.socket) -> None:
    """``server.serve``, with the ``SystemExit`` uvicorn raises when the app's start failed kept here.

    Left to escape, it would end the task with an exception nobody retrieves, and asyncio would
    log "Task exception was never retrieved" after the one line that says what went wrong.
    """
    with contextlib.suppress(SystemExit):
        await server.serve(sockets=[sock])


class _DropStartupFailedLine(logging.Filter):
    """Drops uvicorn's "Application startup failed. Exiting.": the lifespan logged the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Application startup failed. Exiting."


@contextlib.contextmanager
def _quiet_startup_failure() -> Iterator[None]:
    logger = logging.getLogger("uvicorn.error")
    dropper = _DropStartupFailedLine()
    logger.addFilter(dropper)
    try:
        yield
    finally:
        logger.removeFilter(dropper)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(host: str = "127.0.0.1", port: int = RECEIVER_PORT) -> int:
    """``secure-export serve``: configuration from the environment; returns the exit code.

    Exit codes: 0 after a clean shutdown, 2 for invalid configuration (each bad variable named on
    stderr, no traceback), 1 when the receiver could not start (e.g. the port is taken).
    """
    try:
        settings = load_settings(with_backend=True)
    except SettingsError as error:
        sys.stderr.write(f"secure-export serve: {error}\n")
        return EXIT_BAD_CONFIG
    import os

    from receiver.observability.logs import configure_logging
    from receiver.settings import unknown_variables

    for line in unknown_variables(os.environ):
        sys.stderr.write(f"secure-export serve: warning: {line}\n")
    configure_logging(settings.log_level)
    if settings.ops_port is not None and settings.ops_port == port:
        sys.stderr.write(
            f"secure-export serve: invalid receiver configuration: SECURE_EXPORT_OPS_PORT: must differ from --port "
            f"(got {settings.ops_port}); it keeps /metrics and the operations endpoints off the public port\n"
        )
        return EXIT_BAD_CONFIG
    try:
        backend = _create_backend(settings)
    except Exception as error:  # noqa: BLE001 - a backend's configuration error, said plainly
        sys.stderr.write(f"secure-export serve: {error}\n")
        return EXIT_BAD_CONFIG
    try:
        sock = _bind(host, port)
    except OSError as error:
        sys.stderr.write(f"secure-export serve: cannot listen on {host}:{port}: {error.strerror or error}\n")
        return EXIT_FAILED
    ops_sock = None
    if settings.ops_port is not None:
        try:
            ops_sock = _bind(host, settings.ops_port)
        except OSError as error:
            sock.close()
            sys.stderr.write(
                f"secure-export serve: cannot listen on {host}:{settings.ops_port} (SECURE_EXPORT_OPS_PORT): "
                f"{error.strerror or error}\n"
            )
            return EXIT_FAILED
    return run(settings, host=host, port=port, backend=backend, sock=sock, ops_sock=ops_sock)


def _create_backend(settings: ReceiverSettings) -> Any:
    from receiver.http.backends import create_backend

    return create_backend(settings)


class BackgroundServer:
    """A receiver (or any ASGI app) served by uvicorn on a background thread, on 127.0.0.1.

    ``BackgroundServer(app)`` or ``BackgroundServer.from_settings(settings, backend=...)``; then
    ``start()`` (or ``with``) returns once the app's lifespan has started, ``.url`` is its base
    URL, ``stop()`` shuts it down gracefully (in-flight requests finish) and waits.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        graceful_shutdown: float = 5.0,
        start_timeout: float = 20.0,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.graceful_shutdown = graceful_shutdown
        self.start_timeout = start_timeout
        self.url = ""
        self.ops_url = ""
        """Base URL of the operations app (``SECURE_EXPORT_OPS_PORT`` set: a port of its own on
        127.0.0.1 picked by the OS), else the same as :attr:`url`."""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._started = threading.Event()

    @classmethod
    def from_settings(cls, settings: ReceiverSettings, *, backend: Any = None, **kwargs: Any) -> BackgroundServer:
        """A server for ``create_app(settings, backend=backend)``."""
        kwargs.setdefault("graceful_shutdown", settings.graceful_shutdown_seconds)
        return cls(_build_app(settings, backend), **kwargs)

    @property
    def runtime(self) -> Any:
        """The receiver's :class:`receiver.http.state.ReceiverState` (inbox, dispatcher, metrics...), if any."""
        return getattr(getattr(self.app, "state", None), "receiver", None)

    def start(self) -> BackgroundServer:
        """Start serving; raises ``RuntimeError`` with the reason if the app did not start."""
        sock = _bind(self.host, self.port)
        host, port = sock.getsockname()[:2]
        self.port = port
        self.url = f"http://{_url_host(host)}:{port}"
        server = uvicorn.Server(_loop_bound_config(self.app, lifespan="on", graceful=self.graceful_shutdown))
        self._server = server
        ops_app = getattr(getattr(self.app, "state", None), "ops_app", None)
        ops_sock = _bind(self.host, 0) if ops_app is not None else None
        ops = (
            _OpsServer(_loop_bound_config(ops_app, lifespan="off", graceful=self.graceful_shutdown))
            if ops_app is not None
            else None
        )
        self.ops_url = f"http://{_url_host(host)}:{ops_sock.getsockname()[1]}" if ops_sock else self.url

        def run() -> None:
            factory = _loop_factory() or asyncio.new_event_loop
            loop = factory()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(_serve_with_ops(server, sock, ops, ops_sock, self._started.set))
            except BaseException as error:  # noqa: BLE001 - handed to start()/stop()
                self._error = error
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
                sock.close()
                if ops_sock is not None:
                    ops_sock.close()
                self._started.set()

        self._thread = threading.Thread(target=run, name=f"receiver-{port}", daemon=True)
        self._thread.start()
        if not self._started.wait(self.start_timeout):
            self.stop()
            raise RuntimeError(f"the receiver did not start within {self.start_timeout:g}s")
        if not server.started:
            self._thread.join(5)
            error = self._error or getattr(self.runtime, "startup_error", None)
            reason = f": {error}" if error else " (see the logs)"
            raise RuntimeError(f"the receiver failed to start{reason}")
        return self

    def request_stop(self) -> None:
        """Begin a graceful shutdown without waiting (requests in flight still finish)."""
        if self._server is not None:
            self._server.should_exit = True

    def stop(self, timeout: float | None = None) -> None:
        """Shut down gracefully and wait for the thread to end."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.graceful_shutdown + 15)
            self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m receiver.http.server [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(prog="python -m receiver.http.server", description="Run the receiver.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=RECEIVER_PORT)
    args = parser.parse_args(argv)
    return serve(args.host, args.port)


if __name__ == "__main__":
    raise SystemExit(main())
