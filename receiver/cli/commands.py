"""The receiver's commands: ``serve``, ``work-items``, ``cmdb``, ``trace``, ``replay``, ``discard``.

``secure_export.cli`` dispatches here with the command name and its remaining arguments. Every
command has ``--help``; wrong usage or a ``--db`` that is not a SQLite file path (a URL) exits 2,
a missing or unreadable database exits 1 with a message that says what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from receiver.cli.listings import cmdb, work_items
from receiver.cli.operations import discard_command, replay_command, trace_command
from receiver.cli.options import DEFAULT_HOST, parse_args
from secure_export.contract import RECEIVER_PORT


def main(command: str, argv: list[str]) -> int:
    """Run one receiver command and return its exit status."""
    commands: dict[str, Callable[[list[str]], int]] = {
        "serve": _serve,
        "work-items": work_items,
        "cmdb": cmdb,
        "trace": trace_command,
        "replay": replay_command,
        "discard": discard_command,
    }
    handler = commands.get(command)
    if handler is None:
        sys.stderr.write(f"secure-export: {command!r} is not a receiver command ({', '.join(commands)})\n")
        return 2
    if command != "serve":
        # An operator's command says what went wrong in one line of its own; without this, Python's
        # last-resort handler would also print the Azure SDK's multi-line warnings (a failed token).
        logging.getLogger("azure").addHandler(logging.NullHandler())
    try:
        return handler(argv)
    except BrokenPipeError:
        # `secure-export work-items | head` closes the pipe early; that is not an error.
        sys.stderr.close()
        return 0


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="secure-export serve",
        description=(
            "Run the receiver: POST /api/alerts (Azure AD-authenticated secure webhook), "
            "/healthz, /readyz, /metrics. Configuration comes from SECURE_EXPORT_* environment "
            "variables (SECURE_EXPORT_TENANT_ID and SECURE_EXPORT_AUDIENCES are required)."
        ),
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=RECEIVER_PORT, help=f"TCP port (default {RECEIVER_PORT})")
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    if not 0 <= args.port <= 65535:
        sys.stderr.write(f"secure-export serve: --port must be 0..65535, not {args.port}\n")
        return 2
    from receiver.http.server import serve

    return serve(args.host, args.port)
