"""LocalIssuer, the local Azure AD stand-in: its JWKS endpoint and the tokens it mints."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest

from receiver.demo.local_issuer import AZNS_APP_ID, LocalIssuer

V1_CLAIMS = {
    "aud",
    "iss",
    "iat",
    "nbf",
    "exp",
    "aio",
    "idp",
    "oid",
    "rh",
    "roles",
    "sub",
    "tid",
    "uti",
    "ver",
    "appid",
    "appidacr",
}


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def test_jwks_is_served_on_loopback_at_azure_path(issuer: LocalIssuer) -> None:
    assert issuer.jwks_uri.startswith("http://127.0.0.1:")
    assert issuer.jwks_uri.endswith(f"/{issuer.tenant_id}/discovery/v2.0/keys")
    document = httpx.get(issuer.jwks_uri).json()
    (key,) = document["keys"]
    assert key["kty"] == "RSA" and key["use"] == "sig" and key["kid"] == issuer.kid
    assert {"n", "e"} <= set(key) and "d" not in key  # public parameters only


def test_v1_token_has_the_claims_azure_sends(issuer: LocalIssuer) -> None:
    header, claims = unverified(issuer.mint())
    assert header["alg"] == "RS256" and header["kid"] == issuer.kid and header["x5t"] == issuer.kid
    assert set(claims) == V1_CLAIMS
    assert claims["iss"] == f"https://sts.windows.net/{issuer.tenant_id}/"
    assert claims["aud"] == issuer.audience
    assert claims["appid"] == AZNS_APP_ID and claims["appidacr"] == "2"
    assert claims["roles"] == ["ActionGroupsSecureWebhook"]
    assert claims["ver"] == "1.0" and claims["tid"] == issuer.tenant_id
    assert claims["nbf"] == claims["iat"] and claims["exp"] == claims["iat"] + 3600
    assert abs(claims["iat"] - time.time()) < 120


def test_v2_token_has_the_claims_azure_sends(issuer: LocalIssuer) -> None:
    header, claims = unverified(issuer.mint(version=2, lifetime=600))
    assert "x5t" not in header
    assert claims["iss"] == f"https://login.microsoftonline.com/{issuer.tenant_id}/v2.0"
    assert claims["aud"] == issuer.client_id  # v2 tokens always carry the client id
    assert claims["azp"] == AZNS_APP_ID and claims["azpacr"] == "2"
    assert "appid" not in claims and claims["ver"] == "2.0"
    assert claims["exp"] == claims["iat"] + 600
    assert issuer.audiences == (issuer.audience, issuer.client_id)


def test_tokens_verify_with_the_published_key(issuer: LocalIssuer) -> None:
    keys = jwt.PyJWKSet.from_dict(httpx.get(issuer.jwks_uri).json())
    token = issuer.mint()
    claims = jwt.decode(token, keys[issuer.kid], algorithms=["RS256"], audience=issuer.audience)
    assert claims["tid"] == issuer.tenant_id


def test_claim_overrides_replace_and_none_removes(issuer: LocalIssuer) -> None:
    _, claims = unverified(issuer.mint(exp=None, roles=["Other"], extra="x", now=1_000_000))
    assert "exp" not in claims
    assert claims["roles"] == ["Other"] and claims["extra"] == "x" and claims["iat"] == 1_000_000
    with pytest.raises(ValueError):
        issuer.mint(version=3)


def test_rotate_replaces_or_adds_the_published_key(fresh_issuer: LocalIssuer) -> None:
    first = fresh_issuer.kid
    second = fresh_issuer.rotate(keep_old=True).kid
    assert {key["kid"] for key in httpx.get(fresh_issuer.jwks_uri).json()["keys"]} == {first, second}
    third = fresh_issuer.rotate().kid
    assert [key["kid"] for key in httpx.get(fresh_issuer.jwks_uri).json()["keys"]] == [third]
    assert unverified(fresh_issuer.mint())[0]["kid"] == third
    assert len({first, second, third}) == 3


def test_fetch_count_failing_and_unknown_paths(fresh_issuer: LocalIssuer) -> None:
    assert fresh_issuer.fetch_count == 0
    assert httpx.get(fresh_issuer.jwks_uri).status_code == 200
    assert httpx.get(fresh_issuer.base_url + "/other").status_code == 404
    discovery = httpx.get(f"{fresh_issuer.base_url}/{fresh_issuer.tenant_id}/v2.0/.well-known/openid-configuration")
    assert discovery.json()["jwks_uri"] == fresh_issuer.jwks_uri
    fresh_issuer.failing = True
    assert httpx.get(fresh_issuer.jwks_uri).status_code == 500
    assert fresh_issuer.fetch_count == 2  # key-set requests only


def test_stop_is_idempotent_and_port_needs_start() -> None:
    local = LocalIssuer()
    with pytest.raises(RuntimeError):
        _ = local.jwks_uri
    local.start()
    uri = local.jwks_uri
    local.stop()
    local.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(uri, timeout=2)
