"""The receiver with parts of its work switched off — a benchmark instrument, never a product mode.

``make bench`` measures flat-out throughput of these next to the real receiver, so the report can
say where the gap to the baseline goes, layer by layer:

* ``answer-only``: the receiver's server and hot path, but the handler only reads the body and
  answers 202 (no token check, no parsing, no storage): what uvicorn and the ASGI path cost;
* ``no-storage``: token check and parsing as usual, then answered without the inbox (nothing is
  stored: *not* durable — the cost of authentication and the common-schema model);
* ``no-dispatch``: stored durably in the inbox as usual, but nothing is handed to the backend while
  it runs (rows stay pending): the cost of the durable inbox without the ITSM work.

Each variant is the real ``secure-export serve`` process with one function replaced before the
app is built. Run: ``python -m bench.receiver_variants VARIANT serve --host H --port P``.
"""

from __future__ import annotations

import sys
from typing import Any

VARIANTS = ("answer-only", "no-storage", "no-dispatch")


def _answer_only() -> None:
    from receiver.http.alerts import AlertEndpoint

    accepted = b'{"status":"accepted"}'

    async def handle(self: AlertEndpoint, scope: Any, receive: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        await self._read_body(receive)
        return 202, accepted, []

    AlertEndpoint._answer = handle  # type: ignore[method-assign]


def _no_storage() -> None:
    from receiver.storage.records import PutResult
    from receiver.storage.sqlite.inbox import Inbox

    async def put(self: Inbox, alert_id: str, condition: str, body: bytes, **_: Any) -> PutResult:
        return PutResult(None, False)

    Inbox.put = put  # type: ignore[method-assign]


def _no_dispatch() -> None:
    from receiver.dispatch.dispatcher import Dispatcher

    def notify(self: Dispatcher, rows: Any = None) -> None:
        return None

    Dispatcher.notify = notify  # type: ignore[method-assign]


_PATCHES = {"answer-only": _answer_only, "no-storage": _no_storage, "no-dispatch": _no_dispatch}


def main(argv: list[str] | None = None) -> int:
    """Apply ``VARIANT``'s patch, then run the ``secure-export`` command line with the rest."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in _PATCHES:
        sys.stderr.write(f"usage: python -m bench.receiver_variants {{{'|'.join(VARIANTS)}}} serve [options]\n")
        return 2
    _PATCHES[args[0]]()
    from secure_export.cli import main as cli_main

    return cli_main(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
