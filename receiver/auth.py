"""Authentication of secure-webhook calls: Entra ID access tokens and the subscription allow-list.

An Azure Monitor action group calls the receiver with ``Authorization: Bearer <token>``, a token
Entra ID issued to Microsoft's *AzNS AAD Webhook* app for our application. :class:`TokenVerifier`
accepts it only when all of these hold (DESIGN.md, "Data flow"):

* 401 (``WWW-Authenticate: Bearer error="invalid_token"``) unless: the header is ``Bearer <jwt>``;
  the JOSE header says ``alg`` ``RS256`` (nothing else, ever) and names a ``kid`` found in the
  tenant's JWKS (:class:`JwksCache`); the RS256 signature verifies; ``exp``, ``nbf``, ``iat`` are
  present, numeric and within :attr:`AuthPolicy.clock_skew_seconds`; ``ver`` is ``1.0`` or
  ``2.0`` and ``iss`` is exactly that version's issuer for the configured tenant
  (``https://sts.windows.net/{tenant}/`` or ``https://login.microsoftonline.com/{tenant}/v2.0``);
  ``tid`` is the tenant; ``aud`` is a single string among the configured audiences.
* 403 unless: ``appid`` (v1) / ``azp`` (v2) is an allowed caller; ``roles`` holds the required
  role; the token is app-only (no ``scp``; ``idtyp``, when present, is ``app``).
* 503 with ``Retry-After`` (never 401) when the ``kid`` is not in the key set and the key set
  cannot be brought up to date now: a refetch is rate-limited, or it failed. Azure does not retry
  a 401, so a real key rotation right after someone sent a made-up ``kid`` would otherwise lose
  alerts; Azure retries a 503, and the retry after ``Retry-After`` seconds triggers the refetch.
  Such a token is first checked for everything that needs no key (claims, times, issuer,
  audience), so a token that would be refused anyway still gets its 401.

The ``jku``, ``x5u``, ``jwk`` and ``x5c`` header parameters are never read: keys come only from the
configured JWKS URI, so a token cannot bring its own key. A verified token is remembered (by the
exact ``Authorization`` header that carried it) until its ``exp`` so a repeated delivery costs no second RSA
verification; the cache never changes an answer (an entry is dropped at ``exp``, and when its
signing key has left the key set).

A valid token only proves that *some* action group in the tenant sent the call; the subscription
allow-list (:func:`alert_subscriptions`, :func:`check_subscriptions`) is what limits which
subscriptions' alerts are accepted. When an allow-list is configured and an alert's subscription
cannot be determined, the alert is refused (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from receiver.urls import is_loopback_host

__all__ = [
    "AZNS_APP_ID",
    "AuthError",
    "AuthPolicy",
    "Caller",
    "JwksCache",
    "KeySetNotCurrent",
    "TokenVerifier",
    "alert_subscriptions",
    "check_subscriptions",
    "single_authorization",
    "validate_jwks_uri",
]

log = logging.getLogger(__name__)

AZNS_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"
"""Microsoft's first-party *AzNS AAD Webhook* application: the default allowed caller."""

MAX_TOKEN_LENGTH = 16 * 1024
"""Entra access tokens are 1–3 KB; anything this large is refused before it is parsed."""

MAX_CLOCK_SKEW_SECONDS = 600.0
"""Upper bound of the configurable leeway (Microsoft's libraries default to 300 s)."""

MAX_KID_LENGTH = 256
MAX_JWKS_BYTES = 512 * 1024
MAX_JWKS_KEYS = 100
JWKS_TIMEOUT_SECONDS = 5.0

_INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'
_REQUIRED_CLAIMS = ["exp", "nbf", "iat", "iss", "aud", "tid", "ver"]


# -- policy and results ----------------------------------------------------------------------


@dataclass(frozen=True)
class AuthPolicy:
    """What a token must prove. Built once from the validated settings."""

    tenant_id: str
    audiences: frozenset[str]
    allowed_callers: frozenset[str]
    """``appid`` (v1) / ``azp`` (v2) values accepted."""
    required_role: str = "ActionGroupsSecureWebhook"
    clock_skew_seconds: float = 60.0
    """Leeway applied to ``exp``, ``nbf`` and ``iat`` (0..600 s; Microsoft.IdentityModel defaults to 300)."""

    def __post_init__(self) -> None:
        if not self.tenant_id or not self.tenant_id.strip():
            raise ValueError("AuthPolicy.tenant_id is empty; set SECURE_EXPORT_TENANT_ID to your tenant GUID")
        if not self.audiences:
            raise ValueError("AuthPolicy.audiences is empty; set SECURE_EXPORT_AUDIENCES")
        if not self.allowed_callers:
            raise ValueError("AuthPolicy.allowed_callers is empty; set SECURE_EXPORT_ALLOWED_CALLERS")
        if not self.required_role:
            raise ValueError("AuthPolicy.required_role is empty; set SECURE_EXPORT_REQUIRED_ROLE")
        if not 0 <= self.clock_skew_seconds <= MAX_CLOCK_SKEW_SECONDS:
            raise ValueError(
                f"clock skew {self.clock_skew_seconds} s is outside 0..{MAX_CLOCK_SKEW_SECONDS:g} s; use a small leeway such as 60"
            )

    @property
    def v1_issuer(self) -> str:
        """``iss`` of a v1.0 token from the tenant."""
        return f"https://sts.windows.net/{self.tenant_id}/"

    @property
    def v2_issuer(self) -> str:
        """``iss`` of a v2.0 token from the tenant."""
        return f"https://login.microsoftonline.com/{self.tenant_id}/v2.0"


@dataclass(frozen=True)
class Caller:
    """What a verified token proved about the caller."""

    app_id: str
    tenant_id: str
    token_version: int
    roles: tuple[str, ...]
    expires_at: float
    """``exp`` of the token (epoch seconds)."""


class AuthError(Exception):
    """A request that must not be accepted: 401 (invalid token) or 403 (not allowed).

    ``detail`` is for a person and never contains the token.
    """

    def __init__(self, status: int, code: str, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        """Whole seconds for ``Retry-After`` (503 only)."""

    @classmethod
    def invalid_token(cls, detail: str) -> AuthError:
        """401: missing, malformed, unverifiable or out-of-policy token."""
        return cls(401, "invalid_token", detail)

    @classmethod
    def forbidden(cls, detail: str) -> AuthError:
        """403: a genuine token (or alert) that is not allowed here."""
        return cls(403, "forbidden", detail)

    @classmethod
    def unknown_signing_key(cls, retry_after: float) -> AuthError:
        """503: the token's ``kid`` is unknown and the key set cannot be refreshed for ``retry_after`` s."""
        seconds = max(1, math.ceil(retry_after))
        return cls(
            503,
            "unknown_signing_key",
            "the token names a signing key (kid) this receiver does not know yet, and its key set cannot be "
            f"refreshed for another {seconds} s; retry after that",
            retry_after=seconds,
        )

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the answer must carry (``WWW-Authenticate`` on 401, RFC 6750 §3; ``Retry-After`` on 503)."""
        if self.status == 401:
            return {"WWW-Authenticate": _INVALID_TOKEN_CHALLENGE}
        if self.retry_after is not None:
            return {"Retry-After": str(self.retry_after)}
        return {}

    def to_json(self) -> dict[str, str]:
        """The JSON error body of DESIGN.md: ``{"error": code, "detail": detail}``."""
        return {"error": self.code, "detail": self.detail}


# -- JWKS --------------------------------------------------------------------------------------


def validate_jwks_uri(uri: str) -> str:
    """Return ``uri`` if keys may be fetched from it, else raise ``ValueError`` saying why.

    https is required; plain http only for a loopback host (127.0.0.0/8, ::1, localhost), which is
    where the demo's and the tests' :class:`~receiver.demo.local_issuer.LocalIssuer` listens.
    """
    parts = urlsplit(uri)
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError(f"JWKS URI {uri!r} has no host; expected https://login.microsoftonline.com/<tenant>/...")
    if parts.username or parts.password:
        raise ValueError("JWKS URI must not carry credentials")
    if parts.scheme == "https":
        return uri
    if parts.scheme == "http" and is_loopback_host(host):
        return uri
    raise ValueError(f"JWKS URI {uri!r} must use https (plain http is allowed only for 127.0.0.1, ::1 or localhost)")


class JwksFetchError(Exception):
    """The key set could not be fetched or held no usable key."""


class KeySetNotCurrent(Exception):
    """A ``kid`` is unknown and the key set cannot be refreshed now (rate-limited, or the fetch failed).

    ``retry_after`` is the number of seconds until a refetch may run.
    """

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"key set cannot be refreshed for {retry_after:.1f} s")
        self.retry_after = retry_after


class JwksCache:
    """The tenant's signing keys, fetched asynchronously from the JWKS URI and kept in memory.

    Follows Microsoft's key-rollover guidance: fetch on start, refresh on a schedule, refetch when
    a token names an unknown ``kid`` but at most once per ``min_unknown_kid_interval`` (so a flood
    of made-up kids cannot hammer the key endpoint), one fetch at a time, and keep the last good
    key set when a fetch fails. An unknown ``kid`` that cannot be looked up now raises
    :class:`KeySetNotCurrent` (the caller answers 503), rather than being declared unknown. Only
    ``kty`` RSA keys with ``use`` ``sig`` (or no ``use``) and no ``alg`` other than RS256 are used. A successful fetch replaces the set, so a key Azure removed
    stops being trusted.
    """

    def __init__(
        self,
        jwks_uri: str,
        *,
        http: httpx.AsyncClient | None = None,
        refresh_interval: float = 3600.0,
        min_unknown_kid_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_uri = validate_jwks_uri(jwks_uri)
        if refresh_interval <= 0 or min_unknown_kid_interval < 0:
            raise ValueError("refresh_interval must be > 0 and min_unknown_kid_interval >= 0 seconds")
        self._http = http
        self._owns_http = http is None
        self._refresh_interval = refresh_interval
        self._min_unknown_kid_interval = min_unknown_kid_interval
        self.clock = clock
        """Monotonic seconds for the refetch rate limit (tests move it instead of sleeping)."""
        self._keys: dict[str, jwt.PyJWK] = {}
        self._lock = asyncio.Lock()
        self._last_attempt: float | None = None
        self._generation = 0
        """Successful fetches so far: tells a request whether the keys changed while it waited."""
        self._task: asyncio.Task[None] | None = None
        self.fetches = 0
        """JWKS HTTP requests made (successful or not)."""
        self.fetch_errors = 0
        """Fetches that failed (the previous key set was kept)."""
        self.last_error: str | None = None
        """Why the last fetch failed, or None when it succeeded."""

    @property
    def loaded(self) -> bool:
        """True when signing keys are available (readiness)."""
        return bool(self._keys)

    @property
    def kids(self) -> frozenset[str]:
        """Key ids currently trusted."""
        return frozenset(self._keys)

    def has_key(self, kid: str) -> bool:
        """Whether ``kid`` is in the current key set (no fetch)."""
        return kid in self._keys

    async def start(self) -> None:
        """Fetch the keys once (a failure is logged, not raised: readiness shows it) and schedule refreshes."""
        async with self._lock:
            await self._refresh_locked()
        if self._task is None:
            self._task = asyncio.create_task(self._refresh_loop(), name="jwks-refresh")

    async def close(self) -> None:
        """Stop the scheduled refreshes and close the HTTP client if this cache created it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    def refetch_wait(self) -> float:
        """Seconds until an unknown ``kid`` may trigger a refetch (0: now)."""
        if self._last_attempt is None:
            return 0.0
        return max(0.0, self._last_attempt + self._min_unknown_kid_interval - self.clock())

    async def key_for(self, kid: str) -> jwt.PyJWK | None:
        """The key for ``kid``; on a miss, one rate-limited refetch; ``None`` if the current set lacks it.

        Raises :class:`KeySetNotCurrent` when the set cannot be brought up to date now (the refetch
        is rate-limited or fails): then nobody knows whether ``kid`` is genuine.
        """
        key = self._keys.get(kid)
        if key is not None:
            return key
        generation = self._generation
        async with self._lock:
            key = self._keys.get(kid)
            if key is not None:
                return key
            if self._generation != generation:
                # A fetch finished while this request waited for the lock: the set is current.
                return None
            wait = self.refetch_wait()
            if wait > 0:
                raise KeySetNotCurrent(wait)
            if not await self._refresh_locked():
                raise KeySetNotCurrent(max(self._min_unknown_kid_interval, 1.0))
            return self._keys.get(kid)

    async def refresh(self) -> bool:
        """Fetch the key set now (waiting for a running fetch); True when it succeeded."""
        async with self._lock:
            return await self._refresh_locked()

    async def _refresh_loop(self) -> None:
        while True:
            # After a failure (or with no keys yet) retry sooner than the regular schedule.
            delay = self._refresh_interval
            if not self._keys or self.last_error is not None:
                delay = min(self._refresh_interval, max(self._min_unknown_kid_interval, 1.0))
            # ±10 % jitter so that replicas started together do not fetch in lockstep.
            await asyncio.sleep(delay * random.uniform(0.9, 1.1))
            try:
                async with self._lock:
                    await self._refresh_locked()
            except asyncio.CancelledError:
                raise
            except Exception:  # a refresh bug must not end the schedule
                log.exception("jwks refresh crashed; keeping the previous keys")

    async def _refresh_locked(self) -> bool:
        self._last_attempt = self.clock()
        self.fetches += 1
        try:
            keys = await self._fetch()
        except Exception as error:  # any failure (not only JwksFetchError) keeps the last good keys
            self.fetch_errors += 1
            self.last_error = str(error) if isinstance(error, JwksFetchError) else f"{type(error).__name__}: {error}"
            log.warning(
                "jwks fetch failed; keeping the previous keys",
                extra={"jwks_uri": self.jwks_uri, "error": self.last_error, "keys_kept": len(self._keys)},
            )
            return False
        added = keys.keys() - self._keys.keys()
        removed = self._keys.keys() - keys.keys()
        self._keys = keys
        self._generation += 1
        self.last_error = None
        if added or removed:
            log.info(
                "jwks keys updated",
                extra={
                    "jwks_uri": self.jwks_uri,
                    "kids": sorted(keys),
                    "added": sorted(added),
                    "removed": sorted(removed),
                },
            )
        return True

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=JWKS_TIMEOUT_SECONDS, follow_redirects=False)
        try:
            async with self._http.stream("GET", self.jwks_uri, headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise JwksFetchError(f"JWKS endpoint answered HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksFetchError(f"JWKS document is larger than {MAX_JWKS_BYTES} bytes")
        except httpx.HTTPError as error:
            raise JwksFetchError(f"JWKS request failed: {type(error).__name__}: {error}") from error
        try:
            document = json.loads(bytes(body))
        except (ValueError, RecursionError) as error:
            raise JwksFetchError("JWKS document is not JSON") from error
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise JwksFetchError('JWKS document has no "keys" list')
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document["keys"][:MAX_JWKS_KEYS]:
            key = _usable_key(entry)
            if key is not None:
                keys[entry["kid"]] = key
        if not keys:
            raise JwksFetchError("JWKS document holds no RSA signing key with a kid")
        return keys


def _usable_key(entry: Any) -> jwt.PyJWK | None:
    """The entry as an RS256 verification key, or None when it must not be used."""
    if not isinstance(entry, dict):
        return None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
        return None
    if entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
        return None
    # Only the public parameters: never let a published private exponent or certificate chain
    # change how the key is built.
    public = {"kty": "RSA", "kid": kid, "n": entry.get("n"), "e": entry.get("e")}
    try:
        return jwt.PyJWK(public, algorithm="RS256")
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as error:
        log.warning("jwks entry skipped: not a usable RSA key", extra={"kid": kid, "error": str(error)})
        return None


# -- token verification ------------------------------------------------------------------------


_VERSIONS = {"1.0": 1, "2.0": 2}


class TokenVerifier:
    """Verifies ``Authorization`` headers against an :class:`AuthPolicy` and a :class:`JwksCache`."""

    def __init__(
        self,
        policy: AuthPolicy,
        keys: JwksCache,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = 4096,
    ) -> None:
        self.policy = policy
        self.keys = keys
        self._clock = clock
        self._cache_size = max(0, cache_size)
        # Keyed by the exact Authorization header: Azure resends the same header with every alert
        # until the token is renewed, so a hit skips parsing and hashing the ~2 KB token. Only
        # headers whose token verified are stored, so attackers cannot fill it.
        self._cache: OrderedDict[str, tuple[Caller, str]] = OrderedDict()
        self.rsa_verifications = 0
        """RS256 signature checks performed."""
        self.cache_hits = 0
        """Requests answered from the verified-token cache."""

    async def verify(self, authorization: str | None) -> Caller:
        """The caller a valid ``Authorization`` header proves; raises :class:`AuthError` otherwise."""
        now = self._clock()
        if authorization is not None and (cached := self._cache.get(authorization)) is not None:
            caller, kid = cached
            if now < caller.expires_at and self.keys.has_key(kid):
                self._cache.move_to_end(authorization)
                self.cache_hits += 1
                return caller
            # Expired or its key was withdrawn: verify from scratch, which decides (and never re-caches).
            self._cache.pop(authorization, None)
        token = _bearer_token(authorization)
        try:
            caller, kid = await self._verify_uncached(token, now)
        except AuthError:
            raise
        except Exception as error:
            # No token may turn into a 5xx (Azure would retry it): an unforeseen failure while
            # judging a token is a token we cannot accept. Logged in full so the bug is seen.
            log.exception("token verification failed unexpectedly", extra={"error_type": type(error).__name__})
            raise AuthError.invalid_token("token could not be verified") from None
        if self._cache_size and now < caller.expires_at:
            assert authorization is not None  # _bearer_token refused a missing header
            self._cache[authorization] = (caller, kid)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return caller

    async def _verify_uncached(self, token: str, now: float) -> tuple[Caller, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AuthError.invalid_token("malformed token: expected a signed JWT (header.payload.signature)") from None
        alg = header.get("alg")
        if alg != "RS256":
            raise AuthError.invalid_token("token algorithm is not accepted; only RS256 is")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            raise AuthError.invalid_token("token header has no usable key id (kid)")
        try:
            key = await self.keys.key_for(kid)
        except KeySetNotCurrent as pending:
            self._check_unverified(token, now)
            raise AuthError.unknown_signing_key(pending.retry_after) from None
        if key is None:
            raise AuthError.invalid_token("token is signed with a key that is not in the tenant's key set")
        self.rsa_verifications += 1
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={
                    # Time, issuer and audience are checked below against our clock and policy.
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "require": _REQUIRED_CLAIMS,
                },
            )
        except jwt.InvalidSignatureError:
            raise AuthError.invalid_token("token signature does not verify") from None
        except jwt.MissingRequiredClaimError as error:
            raise AuthError.invalid_token(f"token lacks the required claim {error.claim!r}") from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise AuthError.invalid_token("token could not be verified (malformed or unsupported)") from None
        return self._check_claims(claims, now), kid

    def _check_unverified(self, token: str, now: float) -> None:
        """Raise the 401 a token gets for its claims alone, before it is told to come back later.

        Used only when its key cannot be looked up now: a token that is expired, from another
        tenant or for another audience would be refused whatever its key, so Azure need not retry
        it. Nothing here is trusted (no signature was checked), so any refusal is a 401.
        """
        try:
            claims = jwt.decode(token, options={"verify_signature": False, "require": _REQUIRED_CLAIMS})
            self._check_claims(claims, now)
        except AuthError as error:
            raise AuthError.invalid_token(error.detail) from None
        except jwt.MissingRequiredClaimError as error:
            raise AuthError.invalid_token(f"token lacks the required claim {error.claim!r}") from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise AuthError.invalid_token("token could not be verified (malformed or unsupported)") from None

    def _check_claims(self, claims: dict[str, Any], now: float) -> Caller:
        policy = self.policy
        skew = policy.clock_skew_seconds
        exp, nbf, iat = (_numeric_date(claims, name) for name in ("exp", "nbf", "iat"))
        if now >= exp + skew:
            raise AuthError.invalid_token("token has expired")
        if nbf > now + skew:
            raise AuthError.invalid_token("token is not valid yet (nbf is in the future)")
        if iat > now + skew:
            raise AuthError.invalid_token("token was issued in the future (iat); check the clocks")

        version = _VERSIONS.get(claims["ver"]) if isinstance(claims["ver"], str) else None
        if version is None:
            raise AuthError.invalid_token("token version (ver) must be 1.0 or 2.0")
        expected_iss = policy.v1_issuer if version == 1 else policy.v2_issuer
        if claims["iss"] != expected_iss:
            raise AuthError.invalid_token(
                f"token issuer is not this tenant's v{version} issuer; expected {expected_iss}"
            )
        if claims["tid"] != policy.tenant_id:
            raise AuthError.invalid_token("token is from another tenant (tid)")
        aud = claims["aud"]
        if not isinstance(aud, str) or aud not in policy.audiences:
            raise AuthError.invalid_token(
                "token audience (aud) is not one of SECURE_EXPORT_AUDIENCES "
                "(v1 tokens carry the App ID URI, v2 tokens the client id)"
            )

        client_claim = "appid" if version == 1 else "azp"
        app_id = claims.get(client_claim)
        if not isinstance(app_id, str) or app_id not in policy.allowed_callers:
            raise AuthError.forbidden(f"caller application ({client_claim}) is not in SECURE_EXPORT_ALLOWED_CALLERS")
        roles = claims.get("roles")
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise AuthError.forbidden(f"token carries no roles; the role {policy.required_role!r} is required")
        if policy.required_role not in roles:
            raise AuthError.forbidden(f"token lacks the role {policy.required_role!r}")
        if "scp" in claims or claims.get("idtyp", "app") != "app":
            raise AuthError.forbidden("token is a delegated (user) token; an app-only token is required")
        return Caller(
            app_id=app_id,
            tenant_id=policy.tenant_id,
            token_version=version,
            roles=tuple(roles),
            expires_at=float(exp),
        )


def single_authorization(values: Sequence[str]) -> str | None:
    """The one ``Authorization`` header of a request (for :meth:`TokenVerifier.verify`).

    Several ``Authorization`` headers are refused (401): a proxy and this service could each
    read a different one. Use as ``verify(single_authorization(request.headers.getlist("authorization")))``.
    """
    if len(values) > 1:
        raise AuthError.invalid_token("several Authorization headers; send exactly one")
    return values[0] if values else None


_WHITESPACE = re.compile(r"\s")


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        raise AuthError.invalid_token("missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthError.invalid_token("Authorization scheme must be Bearer")
    token = token.strip()
    if not token:
        raise AuthError.invalid_token("Authorization header has no token after 'Bearer'")
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthError.invalid_token(f"token is longer than {MAX_TOKEN_LENGTH} characters")
    # One regex scan in C: a per-character generator cost ~34 µs per request on a 2 KB token.
    # ``\s`` matches exactly what ``str.isspace`` does (incl. \x1c-\x1f).
    if not token.isascii() or _WHITESPACE.search(token) is not None:
        raise AuthError.invalid_token("malformed token: expected a signed JWT (header.payload.signature)")
    return token


def _numeric_date(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError.invalid_token(f"token claim {name!r} is not a numeric date")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    # NaN and infinities (PyJWT's JSON parser accepts them) would make a token never expire.
    if not math.isfinite(seconds):
        raise AuthError.invalid_token(f"token claim {name!r} is not a finite numeric date")
    return seconds


# -- subscription allow-list ------------------------------------------------------------------

_SUBSCRIPTION = re.compile(r"/subscriptions/([^/?#]+)", re.IGNORECASE)


def alert_subscriptions(alert_id: str | None, target_ids: Iterable[str] | None) -> set[str]:
    """Subscription ids (lower-cased) named by an alert's ``alertId`` and ``alertTargetIDs``.

    Each ARM id contributes the segment after its first ``/subscriptions/``; ids without one
    (tenant- or management-group-scoped) contribute nothing.
    """
    found: set[str] = set()
    for resource_id in (alert_id, *(target_ids or ())):
        if isinstance(resource_id, str):
            match = _SUBSCRIPTION.search(resource_id)
            if match and match.group(1).strip():
                found.add(match.group(1).strip().lower())
    return found


def check_subscriptions(subscriptions: set[str], allowed: frozenset[str] | None) -> None:
    """Raise a 403 :class:`AuthError` unless every subscription is allowed.

    ``allowed`` None means no allow-list (all accepted). With an allow-list, an alert whose
    subscription cannot be determined is refused: fail closed.
    """
    if allowed is None:
        return
    allowed_lower = {sub.strip().lower() for sub in allowed}
    if not subscriptions:
        raise AuthError.forbidden(
            "the alert names no subscription (alertId/alertTargetIDs), so SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS "
            "cannot admit it"
        )
    refused = sorted(sub[:64] for sub in subscriptions if sub.lower() not in allowed_lower)
    if refused:
        raise AuthError.forbidden(
            f"alerts from subscription {', '.join(refused[:5])} are not accepted here "
            "(not in SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS)"
        )
