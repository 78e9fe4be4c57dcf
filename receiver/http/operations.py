"""The operations endpoints: trace, replay, discard, and resolve/close an embedded work item.

Served on ``SECURE_EXPORT_OPS_PORT`` when set, else beside ``/metrics`` for loopback clients only;
each calls the same function as its CLI command (docs/operations.md lists requests and answers).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.storage.operations import discard, replay, trace
from receiver.storage.records import DatabaseUnavailable, OpsError
from receiver.urls import is_loopback_host

if TYPE_CHECKING:
    from receiver.http.state import ReceiverState

Handler = Callable[[Request], Awaitable[Response]]


def _answer(status: int, payload: Any) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
    )


def _problem(status: int, code: str, detail: str) -> Response:
    return _answer(status, {"error": code, "detail": detail})


async def _body(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    if not raw:
        return {}
    try:
        document = json.loads(raw)
    except ValueError:
        return _problem(400, "bad_request", "the body must be a JSON object")
    if not isinstance(document, dict):
        return _problem(422, "invalid_request", "the body must be a JSON object")
    return document


def _ids(document: dict[str, Any]) -> list[int] | Response:
    ids = document.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return _problem(422, "invalid_request", '"ids" must be a non-empty list of delivery ids (integers)')
    return ids


def _by(document: dict[str, Any], request: Request) -> str:
    by = document.get("by")
    client = request.client.host if request.client else "unknown"
    return by.strip()[:200] if isinstance(by, str) and by.strip() else f"ops endpoint ({client})"


def _loopback_only(handler: Handler) -> Handler:
    """``handler`` for loopback clients only; others get 403 naming ``SECURE_EXPORT_OPS_PORT``."""

    async def guarded(request: Request) -> Response:
        client = request.client.host if request.client else ""
        if not is_loopback_host(client):
            return _problem(
                403,
                "forbidden",
                "the operations endpoints answer other hosts only on SECURE_EXPORT_OPS_PORT, "
                "a port kept off the public ingress; set it, or call from this machine",
            )
        return await handler(request)

    return guarded


def routes(state: ReceiverState, *, loopback_only: bool = False) -> list[Route]:
    """The ops routes for one receiver ``state`` (its settings, inbox watcher and backend).

    ``loopback_only``: on the main port (no ops port configured) they change and reveal state
    without authentication of their own, so only this machine may call them there.
    """
    db = state.settings.db

    def poke() -> None:
        watcher = state.ops_watcher
        if watcher is not None:
            watcher.poke()

    async def trace_endpoint(request: Request) -> Response:
        try:
            result = await asyncio.to_thread(trace, db, request.path_params["alert_id"])
        except OpsError as error:
            return _problem(503, "unavailable", str(error))
        return _answer(200, result)

    async def replay_endpoint(request: Request) -> Response:
        document = await _body(request)
        if isinstance(document, Response):
            return document
        ids: list[int] | None
        if document.get("all") is True:
            ids = None
        else:
            checked = _ids(document)
            if isinstance(checked, Response):
                return checked
            ids = checked
        try:
            result = await asyncio.to_thread(replay, db, ids, by=_by(document, request))
        except OpsError as error:
            return _problem(503, "unavailable", str(error))
        poke()
        return _answer(200, result.to_json())

    async def discard_endpoint(request: Request) -> Response:
        document = await _body(request)
        if isinstance(document, Response):
            return document
        ids = _ids(document)
        if isinstance(ids, Response):
            return ids
        reason = document.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            return _problem(422, "invalid_request", '"reason" is required: say why the delivery is given up')
        try:
            result = await asyncio.to_thread(discard, db, ids, reason=reason, by=_by(document, request))
        except OpsError as error:
            return _problem(503, "unavailable", str(error))
        poke()
        return _answer(200, result.to_json())

    async def work_item_endpoint(request: Request) -> Response:
        from receiver.itsm.embedded.operations import WorkItemNotFoundError, close_work_item

        if getattr(state.backend, "name", "") != "embedded":
            return _problem(
                409, "not_embedded", "work items are resolved and closed in the ITSM tool itself for this backend"
            )
        document = await _body(request)
        if isinstance(document, Response):
            return document
        note = document.get("note")
        if not isinstance(note, str) or not note.strip():
            return _problem(422, "invalid_request", '"note" is required: say what was done')
        action = request.path_params["action"]
        try:
            item = await asyncio.to_thread(
                close_work_item, db, request.path_params["number"], action=action, note=note, by=_by(document, request)
            )
        except WorkItemNotFoundError as error:
            return _problem(404, "not_found", str(error))
        except DatabaseUnavailable as error:
            return _problem(503, "unavailable", str(error))
        except OpsError as error:
            return _problem(409, "conflict", str(error))
        return _answer(200, item)

    def wrap(handler: Handler) -> Handler:
        return _loopback_only(handler) if loopback_only else handler

    return [
        Route("/ops/trace/{alert_id:path}", wrap(trace_endpoint), methods=["GET"]),
        Route("/ops/replay", wrap(replay_endpoint), methods=["POST"]),
        Route("/ops/discard", wrap(discard_endpoint), methods=["POST"]),
        Route("/ops/work-items/{number}/{action:str}", wrap(work_item_endpoint), methods=["POST"]),
    ]
