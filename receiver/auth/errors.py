"""The failures authentication reports: 401, 403, or 503 with ``Retry-After`` (docs/authentication.md)."""

from __future__ import annotations

import math

_INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'


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
        """The JSON error body of docs/design.md: ``{"error": code, "detail": detail}``."""
        return {"error": self.code, "detail": self.detail}


class JwksFetchError(Exception):
    """The key set could not be fetched or held no usable key."""


class KeySetNotCurrent(Exception):
    """A ``kid`` is unknown and the key set cannot be refreshed now (rate-limited, or the fetch failed).

    ``retry_after`` is the number of seconds until a refetch may run.
    """

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"key set cannot be refreshed for {retry_after:.1f} s")
        self.retry_after = retry_after
