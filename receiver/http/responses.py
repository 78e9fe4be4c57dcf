"""JSON answers and the ASGI names the HTTP layer shares (docs/design.md's ``{"error", "detail"}`` body)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

JSON = "application/json"
RETRY_AFTER_SECONDS = "5"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]
"""A whole answer: status, JSON body and extra headers."""


def json_response(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(),
        status_code=status,
        headers=headers,
        media_type=JSON,
    )


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    """The JSON error body of docs/design.md: ``{"error": code, "detail": detail}``."""
    return json_response(status, {"error": code, "detail": detail}, headers)


_JSON_HEADER = (b"content-type", b"application/json")


def response_start(status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> Message:
    """The ASGI start message of a JSON answer of ``body``, with any extra ``headers``."""
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [_JSON_HEADER, (b"content-length", str(len(body)).encode()), *headers],
    }


def encode_json(payload: dict[str, Any]) -> bytes:
    # orjson writes the same compact UTF-8 JSON as json.dumps(ensure_ascii=False, separators=(",", ":")),
    # in a fraction of the time (this runs once per request).
    return orjson.dumps(payload)


def header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    detail = {404: f"no route {request.url.path!r}", 405: f"method {request.method} is not allowed here"}.get(
        exc.status_code, str(exc.detail)
    )
    return error_response(exc.status_code, code, detail, dict(exc.headers or {}))
