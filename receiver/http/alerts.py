"""``POST /api/alerts``: size, type, token, parse, allow-list, commit, answer (docs/receiver.md has the order)."""

from __future__ import annotations

import logging

from receiver.alerts.events import SYNTHETIC_ALERT_PREFIX
from receiver.alerts.schema import AlertParseError, parse_alert
from receiver.auth.errors import AuthError
from receiver.auth.subscriptions import alert_subscriptions, check_subscriptions
from receiver.auth.tokens import single_authorization
from receiver.http.responses import (
    JSON,
    RETRY_AFTER_SECONDS,
    Answer,
    Receive,
    Scope,
    Send,
    encode_json,
    header_list,
    response_start,
)
from receiver.http.state import ReceiverState
from receiver.storage.records import InboxUnavailable

log = logging.getLogger(__name__)

_CONTENT_TYPE_MEMO = 32


def _content_type_ok(value: str | None) -> bool:
    """``application/json`` with no charset or a UTF-8 one (JSON is UTF-8, RFC 8259)."""
    if not value:
        return False
    media, _, params = value.partition(";")
    if media.strip().lower() != JSON:
        return False
    for param in params.split(";"):
        name, _, arg = param.partition("=")
        if name.strip().lower() == "charset" and arg.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


class _Disconnected(Exception):
    """The client went away before its body arrived: there is no one to answer."""


class AlertEndpoint:
    """``POST /api/alerts`` as a plain ASGI app: the hot path, without per-request wrappers.

    It reads the three headers it needs straight from the ASGI scope, streams the body with a
    running size check and sends pre-encoded JSON; the checks and their order are those of the
    module docstring.
    """

    def __init__(self, state: ReceiverState) -> None:
        self.state = state
        settings = state.settings
        self.limit = settings.max_body_bytes
        self.allowed_subscriptions = settings.allowed_subscriptions
        self.verifier = state.verifier
        self.inbox = state.inbox
        self.metrics = state.metrics
        self.put_timeout = settings.inbox_busy_timeout_seconds * 2 + 5.0
        self._too_large = encode_json(
            {"error": "payload_too_large", "detail": f"the body is larger than the limit of {self.limit} bytes"}
        )
        self._unsupported = encode_json(
            {"error": "unsupported_media_type", "detail": "the body must be sent as Content-Type: application/json"}
        )
        self._unavailable = encode_json(
            {"error": "inbox_unavailable", "detail": "the alert could not be stored durably right now; retry later"}
        )
        self._content_types: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = await self.handle(scope, receive)
        if answer is not None:
            status, body, headers = answer
            await send(response_start(status, body, headers))
            await send({"type": "http.response.body", "body": body})

    async def handle(self, scope: Scope, receive: Receive) -> Answer | None:
        """The whole answer to one request, or ``None`` when the client went away before its body."""
        try:
            return await self._answer(scope, receive)
        except _Disconnected:
            return None

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The body, or ``None`` as soon as it grows past the limit (the rest is not read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _answer(self, scope: Scope, receive: Receive) -> Answer:
        length = content_type = None
        authorizations: list[str] = []
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
            elif name == b"authorization":
                authorizations.append(value.decode("latin-1"))
        if length is not None:
            try:
                if int(length) > self.limit:
                    return 413, self._too_large, []
            except ValueError:
                return 400, encode_json({"error": "bad_request", "detail": "Content-Length is not a number"}), []
        if content_type is None:
            return 415, self._unsupported, []
        type_ok = self._content_types.get(content_type)
        if type_ok is None:
            type_ok = _content_type_ok(content_type.decode("latin-1"))
            # Senders use one or two spellings; the bound keeps odd callers from growing it.
            if len(self._content_types) < _CONTENT_TYPE_MEMO:
                self._content_types[content_type] = type_ok
        if not type_ok:
            return 415, self._unsupported, []
        try:
            # Several Authorization headers are refused: a proxy and this service could each read another.
            await self.verifier.verify(single_authorization(authorizations))
        except AuthError as error:
            log.info(
                "request refused",
                extra={"event": "auth_refused", "status": error.status, "code": error.code, "reason": error.detail},
            )
            return error.status, encode_json(error.to_json()), header_list(error.headers)
        body = await self._read_body(receive)
        if body is None:
            return 413, self._too_large, []
        try:
            alert = parse_alert(body)
        except AlertParseError as error:
            return error.status, encode_json({"error": error.code, "detail": error.detail}), []
        essentials = alert.data.essentials
        alert_id = essentials.alert_id
        condition = essentials.monitor_condition
        if alert_id.startswith(SYNTHETIC_ALERT_PREFIX):
            # Only the receiver writes such rows (receiver.dispatch.lifecycle): a caller must not resolve items with
            # them.
            detail = f"alertId must not start with {SYNTHETIC_ALERT_PREFIX!r}"
            return 422, encode_json({"error": "not_common_alert_schema", "detail": detail}), []
        if self.allowed_subscriptions is not None:
            try:
                check_subscriptions(
                    alert_subscriptions(alert_id, essentials.alert_target_ids), self.allowed_subscriptions
                )
            except AuthError as error:
                log.info(
                    "alert refused by subscription allow-list",
                    extra={"event": "subscription_refused", "alert_id": alert_id, "reason": error.detail},
                )
                return error.status, encode_json(error.to_json()), header_list(error.headers)
        try:
            result = await self.inbox.put(alert_id, condition, body, alert=alert, timeout=self.put_timeout)
        except (InboxUnavailable, TimeoutError) as error:
            log.warning(
                "inbox unavailable; answered 503",
                extra={"event": "inbox_unavailable", "alert_id": alert_id, "error": str(error) or "timeout"},
            )
            return 503, self._unavailable, [(b"retry-after", RETRY_AFTER_SECONDS.encode())]
        duplicate = result.duplicate
        self.metrics.child(self.metrics.alerts_accepted, condition, "true" if duplicate else "false").inc()
        # DEBUG, not INFO: the inbox row (received_at, body) is already the durable record of
        # every accepted alert, and a log line per alert would cost the hot path a visible share of its CPU.
        log.debug(
            "alert accepted",
            extra={"event": "alert_accepted", "alert_id": alert_id, "condition": condition, "duplicate": duplicate},
        )
        return (
            202,
            encode_json(
                {"status": "accepted", "alertId": alert_id, "monitorCondition": condition, "duplicate": duplicate}
            ),
            [],
        )
