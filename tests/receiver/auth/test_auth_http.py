"""The negative token matrix over real HTTP: a real receiver (uvicorn, SQLite in tmp) trusting a LocalIssuer.

Every case of :data:`tests.support.tokens.NEGATIVE_CASES` must get the status docs/design.md gives
(401 with ``WWW-Authenticate: Bearer error="invalid_token"``, 403, or 503 with ``Retry-After`` for an
unknown ``kid`` while a refetch is rate-limited), a JSON error body, and
must store nothing; valid v1 and v2 tokens get 202. Key rotation, the unknown-kid refetch limit
and the verified-token cache are checked against the running receiver too.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.demo.local_issuer import LocalIssuer
from tests.support.alerts import SUBSCRIPTION, alert_body
from tests.support.clock import ManualClock
from tests.support.receivers import RunningReceiver, start_receiver
from tests.support.tokens import NEGATIVE_CASES, VALID_CASES, TokenCase, bearer, unknown_kids

OTHER_SUBSCRIPTION = "11111111-1111-1111-1111-111111111111"


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory, issuer: LocalIssuer) -> Iterator[RunningReceiver]:
    """One receiver for the matrix, allowing alerts of the harness's subscription only."""
    with start_receiver(
        tmp_path_factory.mktemp("auth-http"),
        issuer,
        allowed_subscriptions=SUBSCRIPTION,
        jwks_refresh_seconds=3600,
        jwks_min_refetch_seconds=3600,
    ) as running:
        yield running


def post(rx: RunningReceiver, authorization: str | None, body: dict[str, Any]) -> httpx.Response:
    headers = {} if authorization is None else {"authorization": authorization}
    return rx.post_alert(body, None, headers=headers)


def stored_rows(rx: RunningReceiver) -> int:
    return sum(rx.inbox_counts().values())


def assert_error_answer(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert set(payload) == {"error", "detail"}
    assert payload["detail"]
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert payload["error"] == "invalid_token"
    else:
        assert "www-authenticate" not in response.headers
    if status == 503:
        assert payload["error"] == "unknown_signing_key"
        assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("case", NEGATIVE_CASES, ids=lambda case: case.name)
def test_negative_token_gets_its_status_and_stores_nothing(
    receiver: RunningReceiver, issuer: LocalIssuer, attacker: LocalIssuer, case: TokenCase
) -> None:
    before = stored_rows(receiver)
    authorization = case.build(issuer, attacker)
    response = post(receiver, authorization, alert_body(f"neg-{case.name}"))
    assert_error_answer(response, case.status)
    token = (authorization or "").partition(" ")[2]
    assert not token or token not in response.text
    assert stored_rows(receiver) == before
    assert attacker.fetch_count == 0


@pytest.mark.parametrize("case", VALID_CASES, ids=lambda case: case.name)
def test_valid_token_gets_202(
    receiver: RunningReceiver, issuer: LocalIssuer, attacker: LocalIssuer, case: TokenCase
) -> None:
    before = stored_rows(receiver)
    response = post(receiver, case.build(issuer, attacker), alert_body(f"valid-{case.name}"))
    assert response.status_code == 202, response.text
    assert stored_rows(receiver) == before + 1
    assert attacker.fetch_count == 0


def test_subscription_not_allowed_is_403(receiver: RunningReceiver, issuer: LocalIssuer) -> None:
    before = stored_rows(receiver)
    for version in (1, 2):
        response = post(
            receiver,
            bearer(issuer.mint(version=version)),
            alert_body(f"foreign-{version}", subscription=OTHER_SUBSCRIPTION),
        )
        assert_error_answer(response, 403)
        assert OTHER_SUBSCRIPTION in response.json()["detail"]
    # One foreign target is enough, even when the alert id is in an allowed subscription.
    body = alert_body("mixed-targets")
    body["data"]["essentials"]["alertTargetIDs"].append(f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg")
    assert_error_answer(post(receiver, bearer(issuer.mint()), body), 403)
    # No subscription to be found: fail closed.
    body = alert_body("no-subscription")
    body["data"]["essentials"]["alertId"] = "/providers/Microsoft.AlertsManagement/alerts/tenant-scoped"
    body["data"]["essentials"]["alertTargetIDs"] = None
    assert_error_answer(post(receiver, bearer(issuer.mint()), body), 403)
    assert stored_rows(receiver) == before


def test_repeated_token_costs_no_second_rsa_verification(receiver: RunningReceiver, issuer: LocalIssuer) -> None:
    verifier = receiver.runtime.verifier
    token = bearer(issuer.mint(version=2))
    rsa_before, hits_before = verifier.rsa_verifications, verifier.cache_hits
    for n in range(4):
        assert post(receiver, token, alert_body(f"repeat-{n}")).status_code == 202
    assert verifier.rsa_verifications - rsa_before == 1
    assert verifier.cache_hits - hits_before == 3
    assert receiver.metric("secure_export_token_verifications_total", result="cache_hit") == verifier.cache_hits


# -- key rotation over HTTP (each with its own issuer, since they rotate it) -------------------

REFETCH_INTERVAL = 30.0
"""The unknown-kid refetch interval; the key cache's clock is moved by hand across it (no sleeping)."""


def test_key_rotation_accepted_after_one_refetch(tmp_path: Path) -> None:
    clock = ManualClock()
    with (
        LocalIssuer() as issuer,
        start_receiver(
            tmp_path, issuer, jwks_refresh_seconds=3600, jwks_min_refetch_seconds=REFETCH_INTERVAL, jwks_clock=clock
        ) as rx,
    ):
        old_key = issuer.signing_key
        assert post(rx, bearer(issuer.mint()), alert_body("before-rotation")).status_code == 202
        fetches_before = issuer.fetch_count
        issuer.rotate()  # the old key leaves the JWKS
        clock.advance(REFETCH_INTERVAL - 1)  # the start-up fetch is still too recent: no refetch yet
        too_soon = post(rx, bearer(issuer.mint()), alert_body("too-soon"))
        assert_error_answer(too_soon, 503)  # "retry in 1 s", never 401: Azure would drop the alert
        assert too_soon.headers["retry-after"] == "1"
        assert issuer.fetch_count == fetches_before
        clock.advance(1)  # the refetch allowance since start-up has renewed
        assert post(rx, bearer(issuer.mint(version=2)), alert_body("after-rotation")).status_code == 202
        assert issuer.fetch_count == fetches_before + 1
        stale = bearer(issuer.sign(issuer.claims(), key=old_key))
        # Just after the refetch the old kid cannot be looked up again: "retry", not "invalid".
        assert_error_answer(post(rx, stale, alert_body("old-key")), 503)
        assert post(rx, bearer(issuer.mint()), alert_body("after-rotation-2")).status_code == 202
        assert issuer.fetch_count == fetches_before + 1  # known kid: no further fetch
        clock.advance(REFETCH_INTERVAL)
        assert_error_answer(post(rx, stale, alert_body("old-key")), 401)  # a fresh set lacks it: refused
        assert issuer.fetch_count == fetches_before + 2


def test_rotation_right_after_a_made_up_kid_gets_503_then_the_retry_is_accepted(tmp_path: Path) -> None:
    # docs/design.md: an unknown kid while a refetch is rate-limited is 503 with Retry-After, never
    # 401 (Azure does not retry a 401, so the rotation would lose every alert of the window).
    clock = ManualClock()
    with (
        LocalIssuer() as issuer,
        start_receiver(
            tmp_path, issuer, jwks_refresh_seconds=3600, jwks_min_refetch_seconds=REFETCH_INTERVAL, jwks_clock=clock
        ) as rx,
    ):
        clock.advance(REFETCH_INTERVAL + 1)
        made_up = post(rx, bearer(unknown_kids(issuer, 1)[0]), alert_body("made-up"))
        assert_error_answer(made_up, 401)  # it caused a refetch: the fresh set lacks that kid
        fetches = issuer.fetch_count

        clock.advance(10)
        issuer.rotate()  # Azure rolls its keys; the first alert signed with the new key arrives
        token = bearer(issuer.mint())
        deferred = post(rx, token, alert_body("after-rotation"))
        assert_error_answer(deferred, 503)
        assert deferred.headers["retry-after"] == "20"  # the refetch may run 30 s after the last one
        assert issuer.fetch_count == fetches and stored_rows(rx) == 0

        clock.advance(19)
        assert_error_answer(post(rx, token, alert_body("after-rotation")), 503)  # still inside the window
        clock.advance(1)
        accepted = post(rx, token, alert_body("after-rotation"))  # Azure's retry of the same call
        assert accepted.status_code == 202, accepted.text
        assert issuer.fetch_count == fetches + 1
        assert stored_rows(rx) == 1


def test_flood_of_unknown_kids_is_bounded_to_one_fetch_per_interval(tmp_path: Path) -> None:
    clock = ManualClock()
    with (
        LocalIssuer() as issuer,
        start_receiver(
            tmp_path, issuer, jwks_refresh_seconds=3600, jwks_min_refetch_seconds=REFETCH_INTERVAL, jwks_clock=clock
        ) as rx,
    ):
        for interval in range(2):
            clock.advance(REFETCH_INTERVAL)
            fetches_before = issuer.fetch_count
            with ThreadPoolExecutor(max_workers=8) as pool:
                flood = unknown_kids(issuer, 60)
                responses = list(pool.map(lambda token: post(rx, bearer(token), alert_body("flood")), flood))
            for response in responses:
                # 401 when the interval's refetch (its own, or one it waited for) showed the kid is
                # not in the set; 503 when it arrived after that refetch, inside the new window.
                assert response.status_code in (401, 503)
                assert_error_answer(response, response.status_code)
            assert any(response.status_code == 401 for response in responses)
            assert issuer.fetch_count - fetches_before == 1, f"interval {interval}"  # one per interval
        assert rx.runtime.jwks.fetches == issuer.fetch_count
        assert stored_rows(rx) == 0


def test_jwks_outage_keeps_known_keys_working(tmp_path: Path) -> None:
    with (
        LocalIssuer() as issuer,
        start_receiver(tmp_path, issuer, jwks_refresh_seconds=3600, jwks_min_refetch_seconds=0) as rx,
    ):
        issuer.failing = True
        unknown = post(rx, bearer(unknown_kids(issuer, 1)[0]), alert_body("outage-unknown"))
        # The refetch failed, so nobody knows whether the kid is genuine (a rotation during an
        # outage): 503 so that Azure retries, not a 401 that would drop the alert.
        assert_error_answer(unknown, 503)
        assert unknown.headers["retry-after"] == "1"
        assert post(rx, bearer(issuer.mint()), alert_body("outage-known")).status_code == 202
        assert rx.get("/readyz").status_code == 200  # last known good keys are still loaded
