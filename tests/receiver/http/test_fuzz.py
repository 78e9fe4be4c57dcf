"""Property-based fuzzing of body and headers against a running receiver: never a 5xx.

Bodies range from random bytes through arbitrary JSON to valid alerts with fields replaced by
values of the wrong type, huge numbers and deep nesting; headers vary content type, token and
extra headers. Every answer must be a 2xx/4xx with a JSON body, and the receiver must still
answer ``/healthz`` and accept a valid alert afterwards. Malformed HTTP must get an answer too: a
server that hangs or hangs up without one fails (the socket timeout is not swallowed).

The generated inputs follow one seed per run, printed with any failure (captured output); set
``SECURE_EXPORT_FUZZ_SEED`` to that number to replay the same inputs.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from receiver.demo.local_issuer import LocalIssuer
from tests.support.alerts import alert_body
from tests.support.backends import RecordingBackend
from tests.support.receivers import RunningReceiver, start_receiver

FUZZ_SEED = int(os.environ.get("SECURE_EXPORT_FUZZ_SEED") or secrets.randbelow(2**32))
"""The seed of every generated input in this run (replay with ``SECURE_EXPORT_FUZZ_SEED=<seed>``)."""

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=False,
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)

ESSENTIAL_FIELDS = [
    "alertId",
    "alertRule",
    "severity",
    "signalType",
    "monitorCondition",
    "monitoringService",
    "alertTargetIDs",
    "configurationItems",
    "originAlertId",
    "firedDateTime",
    "resolvedDateTime",
    "description",
    "essentialsVersion",
    "alertContextVersion",
    "investigationLink",
]


@st.composite
def mutated_alert(draw: st.DrawFn) -> bytes:
    body: dict[str, Any] = copy.deepcopy(alert_body(draw(st.integers(0, 10**6))))
    essentials = body["data"]["essentials"]
    for field in draw(st.lists(st.sampled_from(ESSENTIAL_FIELDS), max_size=4, unique=True)):
        if draw(st.booleans()):
            essentials[field] = draw(json_values)
        else:
            essentials.pop(field, None)
    if draw(st.booleans()):
        body["data"]["alertContext"] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        body["data"] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        body["schemaId"] = draw(json_values)
    return json.dumps(body).encode()


@st.composite
def nasty_json(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["deep-array", "deep-object", "big-int", "big-float", "mixed"]))
    depth = draw(st.integers(50, 3000))
    if kind == "deep-array":
        return b"[" * depth + b"]" * depth
    if kind == "deep-object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "big-int":
        return b'{"schemaId": ' + b"9" * draw(st.integers(4000, 20000)) + b"}"
    if kind == "big-float":
        return b'{"schemaId": 1e' + str(draw(st.integers(300, 100000))).encode() + b"}"
    return json.dumps(draw(json_values)).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    json_values.map(lambda value: json.dumps(value).encode()),
    mutated_alert(),
    nasty_json(),
)

header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(str.strip)


@pytest.fixture(scope="module")
def rx(tmp_path_factory: pytest.TempPathFactory, issuer: LocalIssuer) -> Iterator[RunningReceiver]:
    with start_receiver(
        tmp_path_factory.mktemp("fuzz"), issuer, backend=RecordingBackend(), max_body_bytes=65536
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def _print_seed() -> None:
    """Printed into each test's captured output, which pytest shows when the test fails."""
    print(f"fuzz seed {FUZZ_SEED}: replay with SECURE_EXPORT_FUZZ_SEED={FUZZ_SEED}")


@pytest.fixture(scope="module")
def token(issuer: LocalIssuer) -> str:
    return issuer.mint()


def _check(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    assert response.headers.get("content-type", "").startswith("application/json")
    assert "Traceback" not in response.text


@seed(FUZZ_SEED)
@FUZZ
@given(body=bodies)
def test_fuzzed_bodies_never_get_5xx(rx: RunningReceiver, token: str, body: bytes) -> None:
    response = rx.post_alert(body, token)
    _check(response)
    assert response.status_code in (202, 400, 403, 413, 422), response.text


@seed(FUZZ_SEED)
@FUZZ
@given(
    content_type=st.one_of(
        st.none(),
        header_text,
        st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-8",
                "application/json;charset=UTF-8;x=y",
                "APPLICATION/JSON",
            ]
        ),
    ),
    authorization=st.one_of(
        st.none(), header_text, header_text.map(lambda t: ("Bearer " + t).strip()), st.just("Bearer")
    ),
    extra=st.dictionaries(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=15).filter(
            lambda name: (
                name.strip("-")
                and name
                not in (
                    "content-length",
                    "transfer-encoding",
                    "host",
                    "content-type",
                    "authorization",
                    "expect",
                    "connection",
                    "upgrade",
                )
            )
        ),
        header_text,
        max_size=4,
    ),
    body=st.one_of(st.just(b""), mutated_alert()),
)
def test_fuzzed_headers_never_get_5xx(
    rx: RunningReceiver, content_type: str | None, authorization: str | None, extra: dict[str, str], body: bytes
) -> None:
    headers = dict(extra)
    if authorization is not None:
        headers["authorization"] = authorization
    response = rx.post_alert(body, None, content_type=content_type, headers=headers)
    _check(response)


MALFORMED = [
    pytest.param(b"\x00\x01\x02\r\n\r\n", id="binary"),
    pytest.param(b"POST /api/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", id="negative-length"),
    pytest.param(
        b"POST /api/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n", id="two-lengths"
    ),
    pytest.param(b"POST /api/alerts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk"),
    pytest.param(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="huge-url"),
    pytest.param(b"POST /api/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{", id="short-body"),
]


@pytest.mark.parametrize("half_close", [True, False], ids=["then-half-close", "then-wait"])
@pytest.mark.parametrize("payload", MALFORMED)
def test_malformed_http_gets_a_4xx_answer(rx: RunningReceiver, payload: bytes, half_close: bool) -> None:
    """Each gets a 4xx status line; a hang (the 5 s socket timeout) or a hang-up without one fails."""
    host, port = rx.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and not half_close:
                    break  # the head is in; a kept-alive connection need not close
        except ConnectionResetError:
            pass  # a reset after the answer is fine; without one, the assertion below fails
    assert answer.startswith(b"HTTP/1.1 "), f"no answer to {payload[:60]!r}: {answer[:200]!r}"
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]
    assert rx.get("/healthz").status_code == 200


def _raw_post(url: str, head: bytes, body: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 "), f"no answer: {answer[:200]!r}"
    return answer


raw_header_value = st.binary(max_size=80).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))


@seed(FUZZ_SEED)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(authorization=raw_header_value, content_type=st.one_of(st.just(b"application/json"), raw_header_value))
def test_raw_header_bytes_never_get_5xx(
    rx: RunningReceiver, token: str, authorization: bytes, content_type: bytes
) -> None:
    # Bytes httpx would refuse to send (non-ASCII, controls): what a hostile client can still send.
    head = (
        b"POST /api/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: "
        + content_type
        + b"\r\nAuthorization: "
        + authorization
        + b"\r\n"
    )
    answer = _raw_post(rx.url, head, json.dumps(alert_body("raw")).encode())
    status = int(answer.split(b" ", 2)[1])
    assert status < 500, answer[:300]


def test_server_still_serves_after_fuzzing(rx: RunningReceiver, issuer: LocalIssuer) -> None:
    assert rx.get("/healthz").status_code == 200
    assert rx.get("/readyz").status_code == 200
    assert rx.post_alert(alert_body("after-fuzz"), issuer.mint()).status_code == 202
    assert rx.metric("secure_export_http_requests_total", status="500") == 0
    assert rx.metric("secure_export_http_requests_total", status="503") == 0
