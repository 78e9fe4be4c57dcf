"""TokenVerifier and JwksCache against a real LocalIssuer JWKS served over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.auth.errors import AuthError
from receiver.auth.jwks import JwksCache, validate_jwks_uri
from receiver.auth.tokens import AuthPolicy, Caller, TokenVerifier, single_authorization
from receiver.demo.local_issuer import AZNS_APP_ID, LocalIssuer, generate_signing_key
from tests.support.clock import ManualClock
from tests.support.tokens import (
    NEGATIVE_CASES,
    UNKNOWN_KID,
    VALID_CASES,
    TokenCase,
    bearer,
    foreign_key,
    policy_for,
    unknown_kids,
)

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def verifier_for(
    issuer: LocalIssuer,
    *,
    policy: AuthPolicy | None = None,
    clock: Callable[[], float] = time.time,
    keys_clock: Callable[[], float] = time.monotonic,
    min_unknown_kid_interval: float = 30.0,
    cache_size: int = 4096,
) -> AsyncIterator[TokenVerifier]:
    keys = JwksCache(issuer.jwks_uri, min_unknown_kid_interval=min_unknown_kid_interval, clock=keys_clock)
    await keys.start()
    try:
        yield TokenVerifier(policy or policy_for(issuer), keys, clock=clock, cache_size=cache_size)
    finally:
        await keys.close()


async def outcome(verifier: TokenVerifier, authorization: str | None) -> int:
    """202 when accepted, else the AuthError status (the HTTP layer's mapping)."""
    try:
        caller = await verifier.verify(authorization)
    except AuthError as error:
        return error.status
    assert isinstance(caller, Caller)
    return 202


# -- the matrix ----------------------------------------------------------------------------------


async def test_every_negative_case_gets_its_status(issuer: LocalIssuer, attacker: LocalIssuer) -> None:
    results = []
    async with verifier_for(issuer) as verifier:
        for case in NEGATIVE_CASES:
            authorization = case.build(issuer, attacker)
            try:
                await verifier.verify(authorization)
                results.append((case.name, case.status, 202))
            except AuthError as error:
                results.append((case.name, case.status, error.status))
                # The answer must say why without echoing the token.
                assert error.detail
                token = (authorization or "").partition(" ")[2]
                assert not token or token not in error.detail
                assert error.code == {401: "invalid_token", 403: "forbidden", 503: "unknown_signing_key"}[error.status]
                assert (
                    error.headers
                    == {
                        401: {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                        403: {},
                        503: {"Retry-After": "30"},  # the keys were fetched just now; 30 s is the refetch interval
                    }[error.status]
                )

    wrong = [(name, want, got) for name, want, got in results if want != got]
    assert not wrong, f"cases with the wrong status (name, expected, got): {wrong}"
    assert len(results) == len(NEGATIVE_CASES) > 50
    # Header-supplied keys (jwk/jku/x5u) were never fetched.
    assert attacker.fetch_count == 0


async def test_unknown_kid_cases_get_401_once_a_refetch_shows_the_kid_is_not_there(
    fresh_issuer: LocalIssuer, attacker: LocalIssuer
) -> None:
    # The 503 of the matrix is only "come back later": with a refetch allowed, the same tokens are
    # looked up in a fresh key set and refused for good.
    cases = [case for case in NEGATIVE_CASES if case.status == UNKNOWN_KID]
    assert len(cases) >= 5

    async with verifier_for(fresh_issuer, min_unknown_kid_interval=0) as verifier:
        statuses = [await outcome(verifier, case.build(fresh_issuer, attacker)) for case in cases]

    assert statuses == [401] * len(cases)
    assert attacker.fetch_count == 0


@pytest.mark.parametrize("case", VALID_CASES, ids=lambda case: case.name)
async def test_valid_tokens_are_accepted(issuer: LocalIssuer, attacker: LocalIssuer, case: TokenCase) -> None:
    async with verifier_for(issuer) as verifier:
        assert await outcome(verifier, case.build(issuer, attacker)) == 202
    assert attacker.fetch_count == 0


async def test_valid_v1_and_v2_tokens_prove_the_caller(issuer: LocalIssuer) -> None:
    async with verifier_for(issuer) as verifier:
        v1 = await verifier.verify(bearer(issuer.mint(version=1)))
        v2 = await verifier.verify(bearer(issuer.mint(version=2)))

    assert (v1.token_version, v2.token_version) == (1, 2)
    for caller in (v1, v2):
        assert caller.app_id == AZNS_APP_ID
        assert caller.tenant_id == issuer.tenant_id
        assert caller.roles == ("ActionGroupsSecureWebhook",)
        assert caller.expires_at > time.time()


async def test_audience_must_be_configured_for_each_version(issuer: LocalIssuer) -> None:
    """Only the App ID URI configured: v1 tokens pass, v2 tokens (which carry the client id) do not."""
    policy = policy_for(issuer, audiences=frozenset({issuer.audience}))
    async with verifier_for(issuer, policy=policy) as verifier:
        v1 = await outcome(verifier, bearer(issuer.mint(version=1)))
        v2 = await outcome(verifier, bearer(issuer.mint(version=2)))

    assert (v1, v2) == (202, 401)


async def test_configured_role_and_callers_are_used(issuer: LocalIssuer) -> None:
    policy = policy_for(issuer, required_role="Custom.Role", allowed_callers=frozenset({"my-app"}))
    async with verifier_for(issuer, policy=policy) as verifier:
        statuses = (
            await outcome(verifier, bearer(issuer.mint(appid="my-app", roles=["Custom.Role"]))),
            await outcome(verifier, bearer(issuer.mint(appid="my-app"))),
            await outcome(verifier, bearer(issuer.mint(roles=["Custom.Role"]))),
        )

    assert statuses == (202, 403, 403)


# -- clock skew, pinned with a frozen clock -------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"exp": -30}, 202),  # expired 30 s ago, skew 60
        ({"exp": -59}, 202),
        ({"exp": -60}, 401),
        ({"exp": -3600}, 401),
        ({"nbf": 30}, 202),  # valid in 30 s
        ({"nbf": 61}, 401),
        ({"iat": 61}, 401),
    ],
)
async def test_clock_skew_boundaries(issuer: LocalIssuer, claims: dict[str, int], expected: int) -> None:
    now = 1_900_000_000.0
    absolute = {name: int(now) + offset for name, offset in claims.items()}

    async with verifier_for(issuer, clock=lambda: now) as verifier:
        assert await outcome(verifier, bearer(issuer.mint(now=now - 600, **absolute))) == expected


@pytest.mark.parametrize(("skew", "expected"), [(60, 401), (300, 202)])
async def test_skew_is_configurable(issuer: LocalIssuer, skew: float, expected: int) -> None:
    now = 1_900_000_000.0
    token = bearer(issuer.mint(now=now - 3600 - 100, lifetime=3600))  # expired 100 s ago

    policy = policy_for(issuer, clock_skew_seconds=skew)
    async with verifier_for(issuer, policy=policy, clock=lambda: now) as verifier:
        assert await outcome(verifier, token) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"audiences": frozenset()},
        {"allowed_callers": frozenset()},
        {"tenant_id": " "},
        {"required_role": ""},
        {"clock_skew_seconds": 3600},
        {"clock_skew_seconds": 601},
        {"clock_skew_seconds": -1},
    ],
)
def test_policy_rejects_unsafe_configuration(issuer: LocalIssuer, fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        policy_for(issuer, **fields)


# -- verified-token cache -----------------------------------------------------------------------


async def test_repeated_token_costs_no_second_rsa_verification(issuer: LocalIssuer) -> None:
    async with verifier_for(issuer) as verifier:
        token = bearer(issuer.mint())
        first = await verifier.verify(token)
        for _ in range(5):
            assert await verifier.verify(token) == first

    assert verifier.rsa_verifications == 1
    assert verifier.cache_hits == 5


async def test_cached_token_still_fails_once_expired(issuer: LocalIssuer) -> None:
    clock = ManualClock(1_900_000_000.0)
    token = bearer(issuer.mint(now=clock.now, lifetime=600))

    statuses = []
    async with verifier_for(issuer, clock=clock) as verifier:
        statuses.append(await outcome(verifier, token))  # verified, cached
        statuses.append(await outcome(verifier, token))  # cache hit
        clock.advance(600 + 30)  # past exp, within skew: verified again, not from the cache
        statuses.append(await outcome(verifier, token))
        clock.advance(31)  # past exp + skew
        statuses.append(await outcome(verifier, token))
        statuses.append(await outcome(verifier, token))

    assert statuses == [202, 202, 202, 401, 401]
    assert verifier.cache_hits == 1
    assert verifier.rsa_verifications == 4


async def test_cache_is_bounded_and_keyed_by_the_whole_token(issuer: LocalIssuer) -> None:
    async with verifier_for(issuer, cache_size=2) as verifier:
        tokens = [bearer(issuer.mint()) for _ in range(3)]
        for token in tokens:
            await verifier.verify(token)
        await verifier.verify(tokens[2])  # still cached
        await verifier.verify(tokens[0])  # evicted: verified again
        # A cached token with a tampered signature is a different token.
        tampered = tokens[2][:-2] + ("AA" if not tokens[2].endswith("AA") else "BB")
        tampered_status = await outcome(verifier, tampered)

    assert verifier.cache_hits == 1
    assert verifier.rsa_verifications == 5
    assert tampered_status == 401


async def test_cache_is_keyed_by_the_exact_header_and_never_skips_its_checks(issuer: LocalIssuer) -> None:
    # The cache is keyed by the whole Authorization header: another spelling of the same token is
    # judged on its own (and accepted), a header that merely contains a cached token is not.
    async with verifier_for(issuer) as verifier:
        token = issuer.mint()
        await verifier.verify(f"Bearer {token}")
        statuses = [
            await outcome(verifier, f"Bearer {token}"),
            await outcome(verifier, f"bearer {token}"),
            await outcome(verifier, f"Bearer {token} extra"),
            await outcome(verifier, f"Basic {token}"),
        ]

    assert statuses == [202, 202, 401, 401]
    assert verifier.cache_hits == 1
    assert verifier.rsa_verifications == 2


async def test_cached_token_is_dropped_when_its_key_is_withdrawn(fresh_issuer: LocalIssuer) -> None:
    issuer = fresh_issuer
    keys_clock = ManualClock()

    async with verifier_for(issuer, keys_clock=keys_clock) as verifier:
        old = bearer(issuer.mint())
        seen = [await outcome(verifier, old)]
        issuer.rotate()  # old key removed from the JWKS
        keys_clock.advance(31)
        assert await verifier.keys.refresh()
        seen += [await outcome(verifier, old), await outcome(verifier, bearer(issuer.mint()))]
        keys_clock.advance(30)  # a refetch is allowed again: it confirms the old kid is gone
        seen.append(await outcome(verifier, old))

    # 503 right after the refresh (a refetch is rate-limited), then 401 for good.
    assert seen == [202, 503, 202, 401]


# -- key rotation and refetch rate limit --------------------------------------------------------


async def test_key_rotation_accepted_after_one_rate_limited_refetch(fresh_issuer: LocalIssuer) -> None:
    issuer = fresh_issuer
    keys_clock = ManualClock()

    seen: dict[str, Any] = {}
    async with verifier_for(issuer, keys_clock=keys_clock, min_unknown_kid_interval=30) as verifier:
        old_token = bearer(issuer.mint())
        seen["old before"] = await outcome(verifier, old_token)
        seen["fetches at start"] = verifier.keys.fetches
        keys_clock.advance(31)
        issuer.rotate()
        new_token = bearer(issuer.mint())
        seen["new"] = await outcome(verifier, new_token)
        seen["fetches after new kid"] = verifier.keys.fetches
        # A second rotation within the interval is not fetched again: 503, come back when a
        # refetch may run (never 401: Azure would drop the alert) ...
        issuer.rotate()
        newer_token = bearer(issuer.mint())
        keys_clock.advance(12.5)
        with pytest.raises(AuthError) as deferred:
            await verifier.verify(newer_token)
        seen["newer within interval"] = (deferred.value.status, deferred.value.code, deferred.value.headers)
        seen["fetches within interval"] = verifier.keys.fetches
        # ... and the same token, retried after Retry-After, triggers the refetch and is accepted.
        keys_clock.advance(int(deferred.value.headers["Retry-After"]))
        seen["newer after interval"] = await outcome(verifier, newer_token)
        seen["fetches at end"] = verifier.keys.fetches

    assert seen["old before"] == 202
    assert seen["fetches at start"] == 1
    assert seen["new"] == 202
    assert seen["fetches after new kid"] == 2
    assert seen["newer within interval"] == (503, "unknown_signing_key", {"Retry-After": "18"})
    assert seen["fetches within interval"] == 2
    assert seen["newer after interval"] == 202
    assert seen["fetches at end"] == 3
    assert issuer.fetch_count == 3


@pytest.mark.parametrize(
    ("why", "claims"),
    [
        ("expired", {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200, "nbf": int(time.time()) - 7200}),
        ("another audience", {"aud": "api://someone-else"}),
        ("another tenant", {"tid": "00000000-0000-0000-0000-000000000001"}),
        ("no exp", {"exp": None}),
    ],
)
async def test_unknown_kid_token_that_fails_on_its_claims_gets_401_not_503(
    fresh_issuer: LocalIssuer, why: str, claims: dict[str, Any]
) -> None:
    # A retry cannot help a token that is refused whatever its key: no 503 for it.
    issuer = fresh_issuer
    attacker_key = generate_signing_key()
    body = {**issuer.claims(), **claims}
    body = {name: value for name, value in body.items() if value is not None}

    async with verifier_for(issuer, min_unknown_kid_interval=30) as verifier:
        bad = await outcome(verifier, bearer(issuer.sign(body, {"kid": attacker_key.kid}, key=attacker_key)))
        good_claims = issuer.sign(issuer.claims(), {"kid": attacker_key.kid}, key=attacker_key)
        good = await outcome(verifier, bearer(good_claims))

    assert (bad, good) == (401, UNKNOWN_KID), why


async def test_token_signed_with_removed_key_is_rejected_after_rotation(fresh_issuer: LocalIssuer) -> None:
    issuer = fresh_issuer
    keys_clock = ManualClock()
    old_key = issuer.signing_key

    async with verifier_for(issuer, keys_clock=keys_clock, cache_size=0) as verifier:
        before = await outcome(verifier, bearer(issuer.sign(issuer.claims(), key=old_key)))
        issuer.rotate()
        keys_clock.advance(31)
        await outcome(verifier, bearer(issuer.mint()))  # new kid: triggers the refetch
        # Right after that refetch the old kid cannot be looked up again (503); once it can, 401.
        within = await outcome(verifier, bearer(issuer.sign(issuer.claims(), key=old_key)))
        keys_clock.advance(30)
        after = await outcome(verifier, bearer(issuer.sign(issuer.claims(), key=old_key)))

    assert (before, within, after) == (202, 503, 401)


async def test_flood_of_unknown_kids_causes_at_most_one_fetch_per_interval(fresh_issuer: LocalIssuer) -> None:
    issuer = fresh_issuer
    keys_clock = ManualClock()

    async with verifier_for(issuer, keys_clock=keys_clock, min_unknown_kid_interval=30) as verifier:
        flood = [bearer(token) for token in unknown_kids(issuer, 40)]
        keys_clock.advance(31)
        waves = [list(await asyncio.gather(*(outcome(verifier, token) for token in flood)))]
        waves.append([await outcome(verifier, token) for token in flood])
        after_flood = verifier.keys.fetches
        keys_clock.advance(31)
        waves.append(list(await asyncio.gather(*(outcome(verifier, token) for token in flood))))
        at_end = verifier.keys.fetches

    # A concurrent wave shares one refetch, which shows their kids are not in the set: 401. Right
    # after it, a refetch is rate-limited, so the same kids cannot be looked up: 503.
    assert waves == [[401] * 40, [UNKNOWN_KID] * 40, [401] * 40]
    assert after_flood == 2  # the start-up fetch and one refetch for 80 unknown-kid requests
    assert at_end == 3
    assert issuer.fetch_count == 3


async def test_jwks_outage_keeps_last_known_good_keys(fresh_issuer: LocalIssuer) -> None:
    issuer = fresh_issuer
    keys_clock = ManualClock()

    async with verifier_for(issuer, keys_clock=keys_clock) as verifier:
        issuer.failing = True
        keys_clock.advance(31)
        assert await verifier.keys.refresh() is False
        assert verifier.keys.loaded is True
        assert await outcome(verifier, bearer(issuer.mint())) == 202
        keys_clock.advance(31)
        # The refetch for the unknown kid failed: nobody knows whether the kid is genuine, so "retry".
        assert await outcome(verifier, bearer(foreign_key(issuer))) == 503
        assert verifier.keys.fetch_errors == 2
        assert "500" in verifier.keys.last_error


async def test_start_with_jwks_down_is_not_ready_then_recovers(fresh_issuer: LocalIssuer) -> None:
    issuer = fresh_issuer
    keys_clock = ManualClock()
    issuer.failing = True

    async with verifier_for(issuer, keys_clock=keys_clock) as verifier:
        seen: list[Any] = [verifier.keys.loaded, await outcome(verifier, bearer(issuer.mint()))]
        issuer.failing = False
        keys_clock.advance(31)
        seen += [await outcome(verifier, bearer(issuer.mint())), verifier.keys.loaded]

    assert seen == [False, 503, 202, True]


async def test_scheduled_refresh_picks_up_new_keys(fresh_issuer: LocalIssuer) -> None:
    issuer = fresh_issuer

    keys = JwksCache(issuer.jwks_uri, refresh_interval=0.05, min_unknown_kid_interval=3600)
    await keys.start()
    try:
        new_kid = issuer.rotate().kid
        for _ in range(200):  # bounded wait for the background refresh, not a speed assertion
            if keys.has_key(new_kid):
                break
            await asyncio.sleep(0.01)
        assert keys.has_key(new_kid)
        assert keys.fetches >= 2
    finally:
        await keys.close()


# -- JWKS content and URI rules -----------------------------------------------------------------


async def test_only_rsa_signing_keys_are_used() -> None:
    good, other = generate_signing_key(), generate_signing_key()
    document = {
        "keys": [
            {**good.jwk(), "x5c": ["ignored"]},
            {**other.jwk(), "kid": "enc-key", "use": "enc"},
            {**other.jwk(), "kid": "rs512-key", "alg": "RS512"},
            {"kty": "EC", "kid": "ec-key", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "oct", "kid": "hmac-key", "k": "c2VjcmV0"},
            {**other.jwk(), "kid": ""},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not an object",
        ]
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(document).encode())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        keys = JwksCache("https://login.example.test/t/discovery/v2.0/keys", http=http)
        await keys.start()
        await keys.close()

    assert keys.kids == {good.kid}


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, b"not json"), (200, b'{"keys": "nope"}'), (200, b'{"keys": []}'), (404, b"{}"), (200, b"[" * 100_000)],
)
async def test_unusable_jwks_documents_are_fetch_errors(status: int, body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        keys = JwksCache("https://login.example.test/t/discovery/v2.0/keys", http=http)
        await keys.start()
        await keys.close()

    assert not keys.loaded
    assert keys.fetch_errors == 1
    assert keys.last_error


@pytest.mark.parametrize(
    "uri",
    [
        "https://login.microsoftonline.com/t/discovery/v2.0/keys",
        "http://127.0.0.1:8080/keys",
        "http://127.8.9.10/keys",
        "http://localhost:1234/keys",
        "http://[::1]:1234/keys",
    ],
)
def test_jwks_uri_https_or_loopback_http(uri: str) -> None:
    assert validate_jwks_uri(uri) == uri
    assert JwksCache(uri).jwks_uri == uri


@pytest.mark.parametrize(
    "uri",
    [
        "http://login.microsoftonline.com/t/discovery/v2.0/keys",
        "http://127.0.0.1.evil.example/keys",
        "http://10.0.0.1/keys",
        "ftp://127.0.0.1/keys",
        "file:///etc/passwd",
        "https://user:secret@login.microsoftonline.com/keys",
        "not a uri",
    ],
)
def test_jwks_uri_plain_http_elsewhere_is_refused(uri: str) -> None:
    with pytest.raises(ValueError):
        JwksCache(uri)


# -- arbitrary input ------------------------------------------------------------------------------


_authorization_values = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.builds(lambda text: "Bearer " + text, st.text(max_size=300)),
    st.builds(lambda a, b, c: f"Bearer {a}.{b}.{c}", *(st.text(alphabet="ABCxyz019-_=+/", max_size=60),) * 3),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_authorization_values, min_size=1, max_size=20))
async def test_arbitrary_authorization_values_are_401(issuer: LocalIssuer, values: list[str | None]) -> None:
    statuses = []
    async with verifier_for(issuer, min_unknown_kid_interval=3600) as verifier:
        for authorization in values:
            with pytest.raises(AuthError) as raised:
                await verifier.verify(authorization)
            statuses.append(raised.value.status)

    assert set(statuses) == {401}


def test_several_authorization_headers_are_refused(issuer: LocalIssuer) -> None:
    token = bearer(issuer.mint())
    assert single_authorization([]) is None
    assert single_authorization([token]) == token
    with pytest.raises(AuthError) as raised:
        single_authorization([token, "Bearer other"])
    assert raised.value.status == 401
    assert token.partition(" ")[2] not in raised.value.detail
