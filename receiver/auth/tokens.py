"""Verifying an ``Authorization: Bearer`` header: RS256 signature, issuer, audience, times, caller and role."""

from __future__ import annotations

import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from receiver.auth.errors import AuthError, KeySetNotCurrent
from receiver.auth.jwks import MAX_KID_LENGTH, JwksCache

log = logging.getLogger(__name__)

AZNS_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"
"""Microsoft's first-party *AzNS AAD Webhook* application: the default allowed caller."""

MAX_TOKEN_LENGTH = 16 * 1024
"""Entra access tokens are 1–3 KB; anything this large is refused before it is parsed."""

MAX_CLOCK_SKEW_SECONDS = 600.0
"""Upper bound of the configurable leeway (Microsoft's libraries default to 300 s)."""

_REQUIRED_CLAIMS = ["exp", "nbf", "iat", "iss", "aud", "tid", "ver"]


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
                f"clock skew {self.clock_skew_seconds} s is outside 0..{MAX_CLOCK_SKEW_SECONDS:g} s; "
                "use a small leeway such as 60"
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
        # until the token is renewed, so a hit skips parsing and hashing the token. Only
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
    # One regex scan in C: a per-character generator was a measurable share of each request.
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
