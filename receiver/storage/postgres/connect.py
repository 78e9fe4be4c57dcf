"""Connecting to PostgreSQL: URL checks (TLS required), Entra ID tokens refreshed before expiry, the pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
"""The scope of access tokens Azure Database for PostgreSQL accepts as a password."""
TOKEN_REFRESH_MARGIN_SECONDS = 300.0
"""A cached token is replaced this long before it expires (new connections never get a dying one)."""
STRONG_SSLMODES = ("require", "verify-ca", "verify-full")

DbAuth = Literal["password", "entra"]


def connection_errors() -> tuple[type[BaseException], ...]:
    """What losing or not reaching the database raises (asyncpg's errors, sockets, timeouts)."""
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ConnectionError, TimeoutError)


class DatabaseUrlError(ValueError):
    """``SECURE_EXPORT_DB`` is not a usable PostgreSQL URL; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Token:
    """An access token and when it expires (seconds since the epoch)."""

    value: str
    expires_on: float


TokenSource = Callable[[], Awaitable[Token]]


def check_url(url: str) -> str:
    """The ``sslmode`` a URL asks for (``require`` when it names none); raises :class:`DatabaseUrlError`."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise DatabaseUrlError("must start with postgresql:// for PostgreSQL")
    if not parts.hostname:
        raise DatabaseUrlError("the PostgreSQL URL names no host; expected postgresql://USER@HOST:5432/DATABASE")
    if not parts.path.strip("/"):
        raise DatabaseUrlError("the PostgreSQL URL names no database; expected postgresql://USER@HOST:5432/DATABASE")
    if not parts.username:
        raise DatabaseUrlError(
            "the PostgreSQL URL names no user; with SECURE_EXPORT_DB_AUTH=entra the user is the managed identity's name"
        )
    modes = parse_qs(parts.query).get("sslmode", [])
    mode = modes[-1] if modes else "require"
    if mode not in STRONG_SSLMODES:
        raise DatabaseUrlError(
            f"sslmode={mode} in the PostgreSQL URL is not allowed: TLS is required; "
            "use sslmode=require, verify-ca or verify-full"
        )
    return mode


def redact(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class CachedToken:
    """The password callable of the pool: a token from ``source``, refreshed before it expires."""

    def __init__(
        self,
        source: TokenSource,
        *,
        margin: float = TOKEN_REFRESH_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._margin = margin
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def __call__(self) -> str:
        async with self._lock:
            token = self._token
            if token is None or token.expires_on - self._margin <= self._clock():
                token = await self._source()
                self._token = token
                self.fetches += 1
            return token.value


class EntraTokenError(ConnectionError):
    """No access token for the database from the managed identity.

    A ``ConnectionError``, so everything that handles an unreachable database handles it the same
    way: intake answers 503, dispatch pauses, ``/readyz`` and the commands say why.
    """


def entra_token_source(scope: str = ENTRA_SCOPE) -> TokenSource:
    """Tokens of the app's managed identity (``DefaultAzureCredential``; ``AZURE_CLIENT_ID`` picks one)."""
    from azure.core.exceptions import AzureError
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)

    async def fetch() -> Token:
        try:
            access = await asyncio.to_thread(credential.get_token, scope)
        except AzureError as error:
            # The credential chain's message lists every credential it tried; the first line says what failed.
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise EntraTokenError(
                f"no Entra ID access token for PostgreSQL ({reason}); SECURE_EXPORT_DB_AUTH=entra needs the "
                "container app's managed identity (AZURE_CLIENT_ID names a user-assigned one)"
            ) from None
        return Token(access.token, float(access.expires_on))

    return fetch


class Database:
    """How to reach one PostgreSQL database: URL, TLS mode and the password (or token) callable.

    One instance per process, so every pool and connection shares one cached Entra token.
    """

    def __init__(
        self,
        url: str,
        *,
        auth: DbAuth | str = "password",
        token_source: TokenSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.sslmode = check_url(url)
        self.auth: DbAuth = "entra" if auth == "entra" else "password"
        self.password: CachedToken | None = None
        if self.auth == "entra":
            self.password = CachedToken(token_source or entra_token_source(), clock=clock)
        elif token_source is not None:
            self.password = CachedToken(token_source, clock=clock)

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"ssl": self.sslmode}
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs

    async def create_pool(
        self,
        *,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float | None = 30.0,
        connect_timeout: float = 10.0,
    ) -> Any:
        """An asyncpg pool (connections are opened lazily beyond ``min_size``)."""
        import asyncpg

        return await asyncpg.create_pool(
            self.url,
            min_size=min_size,
            max_size=max_size,
            command_timeout=command_timeout,
            timeout=connect_timeout,
            max_inactive_connection_lifetime=300.0,
            **self._kwargs(),
        )

    async def connect(self, *, timeout: float = 10.0) -> Any:
        """One asyncpg connection (LISTEN, the dispatch lease, operator commands)."""
        import asyncpg

        return await asyncpg.connect(self.url, timeout=timeout, **self._kwargs())
