"""Attack-token builders and the negative token matrix shared by the unit and HTTP auth tests.

Each :class:`TokenCase` builds an ``Authorization`` header value from a running
:class:`~receiver.demo.local_issuer.LocalIssuer` (and, for key-injection cases, an attacker's own
issuer whose JWKS must never be fetched) and says which status docs/design.md gives it: 401 for a token
that is missing, malformed, unverifiable or out of policy, 403 for a genuine token that is not
allowed. The matrix follows ``shared/reference/itsm-and-tokens.md`` §2.4.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from receiver.auth.tokens import AuthPolicy
from receiver.demo.local_issuer import LocalIssuer, SigningKey, generate_signing_key
from secure_export.contract import AZNS_AAD_WEBHOOK_CLIENT_ID

OTHER_TENANT = "0b0b0b0b-1111-4222-8333-444455556666"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
OTHER_DAEMON_APP = "7c7c7c7c-aaaa-4bbb-8ccc-dddddddddddd"


def b64url(data: bytes) -> str:
    """Base64url without padding (JWS segment encoding)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(obj: Any) -> str:
    """A JSON value as a JWS segment."""
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def split(token: str) -> tuple[str, str, str]:
    """The three segments of a compact JWS."""
    header, payload, signature = token.split(".")
    return header, payload, signature


def decode_segment(segment: str) -> dict[str, Any]:
    """A JWS segment back to its JSON object."""
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


def policy_for(issuer: LocalIssuer, **overrides: Any) -> AuthPolicy:
    """The receiver policy that accepts ``issuer``'s v1 and v2 tokens."""
    fields: dict[str, Any] = {
        "tenant_id": issuer.tenant_id,
        "audiences": frozenset(issuer.audiences),
        "allowed_callers": frozenset({AZNS_AAD_WEBHOOK_CLIENT_ID}),
    }
    fields.update(overrides)
    return AuthPolicy(**fields)


def bearer(token: str) -> str:
    """An ``Authorization`` header value."""
    return f"Bearer {token}"


# -- builders ------------------------------------------------------------------------------


def unsigned(issuer: LocalIssuer, alg: str = "none") -> str:
    """``alg: none`` (in any spelling) with an empty signature: CVE-2015-2951."""
    header = {"alg": alg, "typ": "JWT", "kid": issuer.kid}
    return f"{b64url_json(header)}.{b64url_json(issuer.claims())}."


def hs256_with_public_key(issuer: LocalIssuer) -> str:
    """RS/HS confusion (CVE-2016-10555): HMAC-SHA256 keyed with the published RSA public key PEM."""
    pem = issuer.signing_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64url_json({'alg': 'HS256', 'typ': 'JWT', 'kid': issuer.kid})}.{b64url_json(issuer.claims())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def other_alg(issuer: LocalIssuer, alg: str) -> str:
    """Signed with the genuine key but another algorithm of the family (RS512, PS256)."""
    return issuer.sign(issuer.claims(), {"kid": issuer.kid, "typ": "JWT"}, algorithm=alg)


def with_signature(token: str, signature: str) -> str:
    """The token with its signature segment replaced."""
    header, payload, _ = split(token)
    return f"{header}.{payload}.{signature}"


def truncated_signature(issuer: LocalIssuer) -> str:
    """A genuine token whose signature lost its last characters."""
    token = issuer.mint()
    return with_signature(token, split(token)[2][:-10])


def flipped_signature(issuer: LocalIssuer) -> str:
    """A genuine token with one signature bit changed."""
    token = issuer.mint()
    raw = bytearray(base64.urlsafe_b64decode(split(token)[2] + "=="))
    raw[len(raw) // 2] ^= 0x01
    return with_signature(token, b64url(bytes(raw)))


def tampered_payload(issuer: LocalIssuer, **changes: Any) -> str:
    """A genuine signature over a payload that was changed afterwards."""
    token = issuer.mint()
    header, payload, signature = split(token)
    claims = decode_segment(payload)
    claims.update(changes)
    return f"{header}.{b64url_json(claims)}.{signature}"


def foreign_key(issuer: LocalIssuer, *, reuse_kid: bool = False) -> str:
    """Correct claims signed by a key that is not in the tenant's JWKS (its own kid, or ours)."""
    attacker = generate_signing_key()
    kid = issuer.kid if reuse_kid else attacker.kid
    return issuer.sign(issuer.claims(), {"kid": kid, "typ": "JWT"}, key=attacker)


def raw_rs256(header: dict[str, Any], claims: dict[str, Any], key: SigningKey) -> str:
    """RS256 over any header, even one PyJWT refuses to produce (a non-string kid, say)."""
    signing_input = f"{b64url_json({'alg': 'RS256', **header})}.{b64url_json(claims)}"
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def with_kid(issuer: LocalIssuer, kid: Any, *, drop: bool = False) -> str:
    """Genuinely signed, with the header's kid replaced (injection strings) or removed."""
    header: dict[str, Any] = {"typ": "JWT"}
    if not drop:
        header["kid"] = kid
    return raw_rs256(header, issuer.claims(), issuer.signing_key)


def unknown_kids(issuer: LocalIssuer, count: int) -> list[str]:
    """Genuinely signed tokens naming ``count`` different kids the JWKS does not hold (a kid flood)."""
    claims = issuer.claims()
    return [
        raw_rs256({"typ": "JWT", "kid": f"unknown-{n}-{uuid.uuid4().hex}"}, claims, issuer.signing_key)
        for n in range(count)
    ]


def injected_key(issuer: LocalIssuer, attacker: LocalIssuer, parameter: str) -> str:
    """Signed by the attacker's key, with a header that points at it (``jwk``, ``jku``, ``x5u``).

    CVE-2018-0114 style: a verifier that trusts header-supplied keys would accept this.
    """
    key: SigningKey = attacker.signing_key
    headers: dict[str, Any] = {"typ": "JWT", "kid": key.kid}
    if parameter == "jwk":
        headers["jwk"] = key.jwk()
    elif parameter == "jku":
        headers["jku"] = attacker.jwks_uri
    elif parameter == "x5u":
        headers["x5u"] = attacker.jwks_uri
    else:
        raise ValueError(parameter)
    return issuer.sign(issuer.claims(), headers, key=key)


def with_crit(issuer: LocalIssuer) -> str:
    """Genuinely signed, with a critical header extension the verifier cannot understand."""
    return issuer.sign(issuer.claims(), {"typ": "JWT", "kid": issuer.kid, "crit": ["exp-ext"], "exp-ext": 1})


def header_not_object(issuer: LocalIssuer) -> str:
    """A header segment that is JSON but not an object."""
    _, payload, signature = split(issuer.mint())
    return f"{b64url_json(['RS256'])}.{payload}.{signature}"


# -- the matrix -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenCase:
    """One negative case: how to build the ``Authorization`` value, and the status it must get."""

    name: str
    status: int
    build: Callable[[LocalIssuer, LocalIssuer], str | None]
    """(issuer, attacker) -> header value, or None for no header at all."""


def _mint(status: int, name: str, version: int = 1, **claims: Any) -> TokenCase:
    return TokenCase(name, status, lambda issuer, _attacker: bearer(issuer.mint(version=version, **claims)))


def _tok(status: int, name: str, build: Callable[[LocalIssuer], str]) -> TokenCase:
    return TokenCase(name, status, lambda issuer, _attacker: bearer(build(issuer)))


def _now() -> int:
    return int(time.time())


UNKNOWN_KID = 503
"""A token whose ``kid`` the key set lacks, seen while a refetch is rate-limited: ``503`` with
``Retry-After``, never 401 (docs/design.md). The matrix runs right after the keys were fetched, so every
such case is rate-limited; with a refetch allowed they get 401 (test_auth.py checks both)."""

NEGATIVE_CASES: tuple[TokenCase, ...] = (
    # header / transport
    TokenCase("no authorization header", 401, lambda i, a: None),
    TokenCase("basic scheme", 401, lambda i, a: "Basic " + base64.b64encode(b"user:pass").decode()),
    TokenCase("token without scheme", 401, lambda i, a: i.mint()),
    TokenCase("bearer without token", 401, lambda i, a: "Bearer"),
    TokenCase("oversized token", 401, lambda i, a: bearer("e" * 16_500 + "." + "e" * 10 + "." + "e")),
    _tok(401, "two segments", lambda i: ".".join(split(i.mint())[:2])),
    _tok(401, "five segments (JWE shape)", lambda i: i.mint() + ".AAAA.BBBB"),
    _tok(401, "not base64url", lambda i: "ey!!.ey$$.%%%"),
    _tok(401, "header not a JSON object", header_not_object),
    # algorithm
    _tok(401, "alg none", lambda i: unsigned(i, "none")),
    _tok(401, "alg None", lambda i: unsigned(i, "None")),
    _tok(401, "alg NONE", lambda i: unsigned(i, "NONE")),
    _tok(401, "alg nOnE", lambda i: unsigned(i, "nOnE")),
    _tok(401, "HS256 signed with the public key", hs256_with_public_key),
    _tok(401, "RS512 with the genuine key", lambda i: other_alg(i, "RS512")),
    _tok(401, "PS256 with the genuine key", lambda i: other_alg(i, "PS256")),
    # signature
    _tok(401, "truncated signature", truncated_signature),
    _tok(401, "bit-flipped signature", flipped_signature),
    _tok(401, "empty signature", lambda i: with_signature(i.mint(), "")),
    _tok(
        401, "payload tampered (caller changed, signature kept)", lambda i: tampered_payload(i, appid=OTHER_DAEMON_APP)
    ),
    _tok(UNKNOWN_KID, "unknown key", foreign_key),
    _tok(401, "foreign key reusing our kid", lambda i: foreign_key(i, reuse_kid=True)),
    _tok(401, "missing kid", lambda i: with_kid(i, None, drop=True)),
    _tok(UNKNOWN_KID, "kid path traversal", lambda i: with_kid(i, "../../../../dev/null")),
    _tok(UNKNOWN_KID, "kid sql injection", lambda i: with_kid(i, "' OR 1=1--")),
    _tok(401, "kid very long", lambda i: with_kid(i, "k" * 5000)),
    _tok(401, "kid not a string", lambda i: with_kid(i, 12345)),
    TokenCase("embedded jwk (attacker key)", UNKNOWN_KID, lambda i, a: bearer(injected_key(i, a, "jwk"))),
    TokenCase("jku to attacker JWKS", UNKNOWN_KID, lambda i, a: bearer(injected_key(i, a, "jku"))),
    TokenCase("x5u to attacker JWKS", UNKNOWN_KID, lambda i, a: bearer(injected_key(i, a, "x5u"))),
    _tok(401, "unknown crit extension", with_crit),
    # time
    TokenCase("expired", 401, lambda i, a: bearer(i.mint(now=_now() - 7200, lifetime=3600))),
    TokenCase("not yet valid (nbf)", 401, lambda i, a: bearer(i.mint(nbf=_now() + 3600))),
    TokenCase("issued in the future (iat)", 401, lambda i, a: bearer(i.mint(iat=_now() + 3600))),
    _mint(401, "no exp", exp=None),
    _mint(401, "no nbf", nbf=None),
    _mint(401, "no iat", iat=None),
    _mint(401, "exp not numeric", exp="tomorrow"),
    _mint(401, "exp a list", exp=[1]),
    _mint(401, "exp true", exp=True),
    _mint(401, "exp infinite", exp=float("inf")),
    _mint(401, "exp NaN", exp=float("nan")),
    _mint(401, "exp beyond the float range", exp=10**400),
    _mint(401, "nbf minus infinity", nbf=float("-inf")),
    # issuer, tenant, audience, version
    _mint(401, "wrong iss: other tenant", iss=f"https://sts.windows.net/{OTHER_TENANT}/"),
    _mint(401, "wrong iss: common", iss="https://sts.windows.net/common/"),
    TokenCase(
        "wrong iss: no trailing slash", 401, lambda i, a: bearer(i.mint(iss=f"https://sts.windows.net/{i.tenant_id}"))
    ),
    TokenCase("wrong iss: v2 issuer in a v1 token", 401, lambda i, a: bearer(i.mint(iss=i.issuer(2)))),
    TokenCase("wrong iss: suffix", 401, lambda i, a: bearer(i.mint(version=2, iss=i.issuer(2) + "x"))),
    TokenCase(
        "wrong iss: look-alike host",
        401,
        lambda i, a: bearer(i.mint(version=2, iss=f"https://login.microsoftonline.com.evil/{i.tenant_id}/v2.0")),
    ),
    _mint(401, "no iss", iss=None),
    _mint(401, "tid differs from iss", tid=OTHER_TENANT),
    _mint(401, "no tid", tid=None),
    _mint(401, "tid not a string", tid=123),
    _mint(401, "other tenant, everything else valid", iss=f"https://sts.windows.net/{OTHER_TENANT}/", tid=OTHER_TENANT),
    _mint(401, "wrong aud: Microsoft Graph", aud=GRAPH_APP_ID),
    _mint(401, "wrong aud: another app", aud="api://someone-else"),
    TokenCase("aud as a list holding ours", 401, lambda i, a: bearer(i.mint(aud=[i.audience]))),
    _mint(401, "no aud", aud=None),
    _mint(401, "ver missing", ver=None),
    _mint(401, "ver 3.0", ver="3.0"),
    # authorisation (genuine tokens, not allowed)
    _mint(403, "wrong caller (v1 appid)", appid=OTHER_DAEMON_APP),
    _mint(403, "wrong caller (v2 azp)", version=2, azp=OTHER_DAEMON_APP),
    _mint(403, "v1 token naming the caller only in azp", appid=None, azp=AZNS_AAD_WEBHOOK_CLIENT_ID),
    _mint(403, "missing role", roles=None),
    _mint(403, "empty roles", roles=[]),
    _mint(403, "other role", roles=["Reader"]),
    _mint(403, "roles as a string", roles="ActionGroupsSecureWebhook"),
    _mint(403, "delegated token (scp)", scp="user_impersonation"),
    _mint(403, "user token (idtyp)", idtyp="user"),
)
"""Every negative token case of issue #3 item 9 and §2.4, with the status docs/design.md gives it."""


VALID_CASES: tuple[TokenCase, ...] = (
    TokenCase("valid v1", 202, lambda i, a: bearer(i.mint(version=1))),
    TokenCase("valid v2", 202, lambda i, a: bearer(i.mint(version=2))),
    TokenCase("valid v1, lowercase scheme", 202, lambda i, a: "bearer " + i.mint(version=1)),
    TokenCase(
        "valid, carries a jku that is ignored",
        202,
        lambda i, a: bearer(i.sign(i.claims(), {"kid": i.kid, "jku": a.jwks_uri})),
    ),
    TokenCase(
        "valid, exp 30 s ago (within the 60 s skew)", 202, lambda i, a: bearer(i.mint(now=_now() - 3630, lifetime=3600))
    ),
    TokenCase("valid, nbf 30 s ahead (within the 60 s skew)", 202, lambda i, a: bearer(i.mint(nbf=_now() + 30))),
    TokenCase(
        "valid, hand-built RS256 (control for the kid cases)",
        202,
        lambda i, a: bearer(raw_rs256({"typ": "JWT", "kid": i.kid}, i.claims(), i.signing_key)),
    ),
    TokenCase("valid, idtyp app", 202, lambda i, a: bearer(i.mint(idtyp="app"))),
)
"""Tokens that must be accepted (202 at the HTTP level)."""
