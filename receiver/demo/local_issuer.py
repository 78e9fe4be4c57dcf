"""A local stand-in for Entra ID: a signing key, a JWKS endpoint on loopback, and tokens as Azure Monitor sends them.

For the demo, the tests and the benchmarks only (docs/authentication.md, "The local issuer").
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "AZNS_APP_ID",
    "DEMO_CLIENT_ID",
    "DEMO_TENANT_ID",
    "LocalIssuer",
    "SigningKey",
    "generate_signing_key",
]

log = logging.getLogger(__name__)

DEMO_TENANT_ID = "5e1f0c2a-7d3b-4a6e-9c8f-0b1d2e3f4a5b"
"""Tenant GUID the demo issuer speaks for (made up; not a real tenant)."""

DEMO_CLIENT_ID = "0f6c9a1e-2b4d-4e8f-a3c5-7d9e1b2c4f60"
"""Client id of the demo receiver application: the ``aud`` of v2 tokens (made up)."""

AZNS_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"
"""Client id of Microsoft's first-party *AzNS AAD Webhook* app: ``appid`` (v1) / ``azp`` (v2)."""

AZNS_OBJECT_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
"""Object id of the AzNS service principal in the demo tenant: the ``oid``/``sub`` of its tokens."""

ROLE = "ActionGroupsSecureWebhook"


def _b64url_uint(value: int) -> str:
    """Base64url without padding of an unsigned big-endian integer (JWK ``n``/``e`` encoding)."""
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class SigningKey:
    """An RSA key pair with its key id, as a JWKS publishes it."""

    def __init__(self, private_key: rsa.RSAPrivateKey, kid: str) -> None:
        self.private_key = private_key
        self.kid = kid

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        """The public half (what the JWKS serves)."""
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        """The public key as a JWK, in the shape Entra publishes (``kty`` RSA, ``use`` sig, no ``alg``)."""
        numbers = self.public_key.public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            # Entra publishes x5t equal to kid (the certificate thumbprint); we have no certificate,
            # so reuse the kid as Entra's values do.
            "x5t": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }


def generate_signing_key(key_size: int = 2048) -> SigningKey:
    """A fresh RSA key with a kid derived from its public modulus (like a thumbprint)."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    modulus = private_key.public_key().public_numbers().n
    digest = hashlib.sha256(modulus.to_bytes((modulus.bit_length() + 7) // 8, "big")).digest()
    kid = base64.urlsafe_b64encode(digest[:20]).rstrip(b"=").decode("ascii")
    return SigningKey(private_key, kid)


class LocalIssuer:
    """A local Azure AD stand-in: JWKS over HTTP on 127.0.0.1 and action-group-shaped tokens.

    Use as a context manager (or call :meth:`start`/:meth:`stop`). Tokens:

    * v1 (default): ``iss`` ``https://sts.windows.net/{tenant}/``, ``aud`` = :attr:`audience`
      (the App ID URI), ``appid``/``appidacr``, ``ver`` ``1.0``;
    * v2: ``iss`` ``https://login.microsoftonline.com/{tenant}/v2.0``, ``aud`` = :attr:`client_id`
      (v2 tokens always carry the client id), ``azp``/``azpacr``, ``ver`` ``2.0``.

    Configure a receiver for it with ``SECURE_EXPORT_TENANT_ID=issuer.tenant_id``,
    ``SECURE_EXPORT_AUDIENCES=",".join(issuer.audiences)``, ``SECURE_EXPORT_JWKS_URI=issuer.jwks_uri``.
    """

    def __init__(
        self,
        tenant_id: str = DEMO_TENANT_ID,
        audience: str = "api://secure-export-demo",
        *,
        client_id: str = DEMO_CLIENT_ID,
        caller_app_id: str = AZNS_APP_ID,
        caller_object_id: str = AZNS_OBJECT_ID,
        key_size: int = 2048,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant_id = tenant_id
        self.audience = audience
        self.client_id = client_id
        self.caller_app_id = caller_app_id
        self.caller_object_id = caller_object_id
        self._key_size = key_size
        self._clock = clock
        self._lock = threading.Lock()
        self._signing_key = generate_signing_key(key_size)
        self._published: list[SigningKey] = [self._signing_key]
        self._fetch_count = 0
        self._failing = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- keys --------------------------------------------------------------------------------

    @property
    def signing_key(self) -> SigningKey:
        """The key :meth:`mint` signs with (published in the JWKS)."""
        return self._signing_key

    @property
    def kid(self) -> str:
        """Key id of the current signing key."""
        return self._signing_key.kid

    def rotate(self, *, keep_old: bool = False) -> SigningKey:
        """Publish a new signing key and sign with it from now on.

        The old key is removed from the JWKS (Azure's emergency rollover) unless ``keep_old``
        (a regular rollover, when both are published for a while). Returns the new key.
        """
        new_key = generate_signing_key(self._key_size)
        with self._lock:
            self._published = [*self._published, new_key] if keep_old else [new_key]
            self._signing_key = new_key
        return new_key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JSON Web Key Set currently served."""
        with self._lock:
            return {"keys": [key.jwk() for key in self._published]}

    @property
    def fetch_count(self) -> int:
        """How many times the JWKS endpoint was requested (successful or failed answers)."""
        with self._lock:
            return self._fetch_count

    @property
    def failing(self) -> bool:
        """When true the JWKS endpoint answers 500 (to test an Azure AD outage)."""
        return self._failing

    @failing.setter
    def failing(self, value: bool) -> None:
        self._failing = value

    # -- HTTP server -------------------------------------------------------------------------

    @property
    def jwks_path(self) -> str:
        """Path of the key set, as on login.microsoftonline.com."""
        return f"/{self.tenant_id}/discovery/v2.0/keys"

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("LocalIssuer is not started; call start() or use it as a context manager")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_uri(self) -> str:
        """``http://127.0.0.1:<port>/<tenant>/discovery/v2.0/keys`` (after :meth:`start`)."""
        return self.base_url + self.jwks_path

    def start(self) -> None:
        """Serve the JWKS on 127.0.0.1 on a free port, from a daemon thread."""
        if self._server is not None:
            return
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="local-issuer-jwks", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        log.info("local issuer serving JWKS", extra={"jwks_uri": self.jwks_uri, "tenant_id": self.tenant_id})

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LocalIssuer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self, path: str) -> tuple[int, bytes]:
        """Answer one GET: (status, JSON body). Only key-set requests count in :attr:`fetch_count`."""
        route = path.split("?", 1)[0]
        if route == self.jwks_path:
            with self._lock:
                self._fetch_count += 1
            if self._failing:
                return 500, json.dumps({"error": "temporarily_unavailable"}).encode()
            return 200, json.dumps(self.jwks()).encode()
        if route == f"/{self.tenant_id}/v2.0/.well-known/openid-configuration" and not self._failing:
            doc = {
                "issuer": self.issuer(2),
                "jwks_uri": self.jwks_uri,
                "id_token_signing_alg_values_supported": ["RS256"],
            }
            return 200, json.dumps(doc).encode()
        return 404, json.dumps({"error": "not_found"}).encode()

    # -- tokens ------------------------------------------------------------------------------

    @property
    def audiences(self) -> tuple[str, str]:
        """The ``aud`` values this issuer's v1 and v2 tokens carry (configure both on the receiver)."""
        return (self.audience, self.client_id)

    def issuer(self, version: int) -> str:
        """The ``iss`` claim Entra puts in a v1 or v2 token of this tenant."""
        if version == 1:
            return f"https://sts.windows.net/{self.tenant_id}/"
        if version == 2:
            return f"https://login.microsoftonline.com/{self.tenant_id}/v2.0"
        raise ValueError(f"token version must be 1 or 2, not {version!r}")

    def claims(self, *, version: int = 1, lifetime: float = 3600, now: float | None = None) -> dict[str, Any]:
        """The claims of an action-group token, as Entra issues them for the AzNS AAD Webhook app."""
        issued = int(self._clock() if now is None else now)
        claims: dict[str, Any] = {
            "aud": self.audience if version == 1 else self.client_id,
            "iss": self.issuer(version),
            "iat": issued,
            "nbf": issued,
            "exp": int(issued + lifetime),
            "aio": base64.b64encode(uuid.uuid4().bytes).decode("ascii"),
            "idp": f"https://sts.windows.net/{self.tenant_id}/",
            "oid": self.caller_object_id,
            "rh": "0.local-issuer.",
            "roles": [ROLE],
            "sub": self.caller_object_id,
            "tid": self.tenant_id,
            "uti": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii"),
            "ver": "1.0" if version == 1 else "2.0",
        }
        if version == 1:
            claims["appid"] = self.caller_app_id
            claims["appidacr"] = "2"
        else:
            claims["azp"] = self.caller_app_id
            claims["azpacr"] = "2"
        return claims

    def mint(
        self, *, version: int = 1, lifetime: float = 3600, now: float | None = None, **claim_overrides: Any
    ) -> str:
        """A signed access token as an action group presents it.

        ``claim_overrides`` replace claims; a value of ``None`` removes the claim (to build a token
        without ``exp``, say). ``now`` pins the issue time (default: the issuer's clock).
        """
        claims = self.claims(version=version, lifetime=lifetime, now=now)
        for name, value in claim_overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        headers: dict[str, Any] = {"typ": "JWT", "kid": self.kid}
        if version == 1:
            headers["x5t"] = self.kid
        return self.sign(claims, headers)

    def sign(
        self,
        claims: Mapping[str, Any],
        headers: Mapping[str, Any] | None = None,
        *,
        key: SigningKey | rsa.RSAPrivateKey | None = None,
        algorithm: str = "RS256",
    ) -> str:
        """Sign arbitrary claims with arbitrary headers (for attack tokens in tests).

        ``key`` defaults to the current signing key; ``headers`` default to ``{"kid": <its kid>}``.
        A ``kid`` given in ``headers`` is kept as is, even if it names another key.
        """
        signing = self._signing_key if key is None else key
        private_key = signing.private_key if isinstance(signing, SigningKey) else signing
        final_headers: dict[str, Any] = dict(headers) if headers is not None else {}
        if "kid" not in final_headers and isinstance(signing, SigningKey):
            final_headers["kid"] = signing.kid
        return jwt.encode(dict(claims), private_key, algorithm=algorithm, headers=final_headers)


def _make_handler(issuer: LocalIssuer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one issuer (the stdlib server wants a class)."""

    class _JwksHandler(BaseHTTPRequestHandler):
        server_version = "secure-export-local-issuer"

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            status, body = issuer._serve(self.path)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            # The stdlib writes every request to stderr; route it to debug logging instead.
            log.debug("local issuer request: " + format, *args)

    return _JwksHandler
