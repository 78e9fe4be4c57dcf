"""The receiver with one layer of its work switched off: a benchmark instrument, never a product mode.

Variants ``answer-only``, ``no-storage`` and ``no-dispatch`` (docs/benchmarks.md, "Where the gap
goes"): the real ``secure-export serve`` with one method replaced before the app is built.
Run: ``python -m bench.receiver_variants VARIANT serve --host H --port P``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from receiver.alerts.schema import CommonAlert
    from receiver.http.responses import Answer, Receive, Scope
    from receiver.storage.records import InboxRow

VARIANTS = ("answer-only", "no-storage", "no-dispatch")


def _answer_only() -> None:
    from receiver.http.alerts import AlertEndpoint

    accepted = b'{"status":"accepted"}'

    async def answer(self: AlertEndpoint, scope: Scope, receive: Receive) -> Answer:
        await self._read_body(receive)
        return 202, accepted, []

    # Why: ``_answer`` (private) is the endpoint's whole check-parse-store sequence behind the ASGI
    # entry; replacing it, and reading the body with the endpoint's own ``_read_body``, leaves
    # exactly the server and the ASGI path to measure.
    AlertEndpoint._answer = answer  # type: ignore[method-assign]  # the benchmark swaps it on purpose


def _no_storage() -> None:
    from receiver.storage.records import PutResult
    from receiver.storage.sqlite.inbox import Inbox

    async def put(
        self: Inbox,
        alert_id: str,
        monitor_condition: str,
        body: bytes,
        *,
        alert: CommonAlert | None = None,
        timeout: float | None = None,
    ) -> PutResult:
        return PutResult(None, False)

    # Why: ``put`` is where the endpoint hands a checked, parsed alert to storage; answering
    # without it keeps the token check and the schema model in the measured path and drops the
    # commit. The inbox itself still starts, so the app is built exactly as in the product.
    Inbox.put = put  # type: ignore[method-assign]  # the benchmark swaps it on purpose


def _no_dispatch() -> None:
    from receiver.dispatch.dispatcher import Dispatcher

    def notify(self: Dispatcher, rows: list[InboxRow] | None = None) -> None:
        return None

    # Why: the inbox calls ``notify`` after each commit to hand the new rows to the dispatcher;
    # ignoring it leaves every row pending, so the durable inbox is measured without the ITSM work.
    Dispatcher.notify = notify  # type: ignore[method-assign]  # the benchmark swaps it on purpose


_PATCHES = {"answer-only": _answer_only, "no-storage": _no_storage, "no-dispatch": _no_dispatch}


def apply(variant: str) -> None:
    """Switch off ``variant``'s layer in this process; call before the receiver's app is built."""
    _PATCHES[variant]()


def main(argv: list[str] | None = None) -> int:
    """Apply ``VARIANT``'s patch, then run the ``secure-export`` command line with the rest."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in _PATCHES:
        sys.stderr.write(f"usage: python -m bench.receiver_variants {{{'|'.join(VARIANTS)}}} serve [options]\n")
        return 2
    apply(args[0])
    from secure_export.cli import main as cli_main

    return cli_main(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
