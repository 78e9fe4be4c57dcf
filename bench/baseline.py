"""The baseline: the receiver's server stack (Starlette, its uvicorn configuration, same route)
with nothing behind the route; the handler reads the body and answers 202.

Run: ``python -m bench.baseline --host 127.0.0.1 --port PORT``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from receiver.settings import ReceiverSettings

ACCEPTED_BODY = {"status": "accepted"}


async def _accept(request: Request) -> Response:
    """Read the whole body (as the receiver must) and answer 202."""
    await request.body()
    return JSONResponse(ACCEPTED_BODY, status_code=202)


async def _healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app() -> Starlette:
    """The baseline ASGI application."""
    return Starlette(routes=[Route("/api/alerts", _accept, methods=["POST"]), Route("/healthz", _healthz)])


def main(argv: list[str] | None = None) -> int:
    """Serve the baseline with the uvicorn options the receiver's ``serve`` uses."""
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    import uvicorn

    from receiver.http.server import uvicorn_config

    # The receiver's own uvicorn configuration function, so both servers differ only in the app.
    settings = cast("ReceiverSettings", BaselineSettings())
    config = uvicorn_config(create_app(), host=args.host, port=args.port, settings=settings)
    uvicorn.Server(config).run()
    return 0


class BaselineSettings:
    """The one receiver setting ``uvicorn_config`` reads; the baseline has no other configuration."""

    graceful_shutdown_seconds = 10.0


if __name__ == "__main__":
    raise SystemExit(main())
