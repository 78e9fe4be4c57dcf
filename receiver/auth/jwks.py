"""The tenant's signing keys: where they may come from, fetching them, and refreshing on an unknown ``kid``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from receiver.auth.errors import JwksFetchError, KeySetNotCurrent
from receiver.urls import is_loopback_host

log = logging.getLogger(__name__)

MAX_KID_LENGTH = 256
MAX_JWKS_BYTES = 512 * 1024
MAX_JWKS_KEYS = 100
JWKS_TIMEOUT_SECONDS = 5.0


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


class JwksCache:
    """The tenant's signing keys, fetched asynchronously from the JWKS URI and kept in memory.

    Follows Microsoft's key-rollover guidance: fetch on start, refresh on a schedule, refetch when
    a token names an unknown ``kid`` but at most once per ``min_unknown_kid_interval`` (so a flood
    of made-up kids cannot hammer the key endpoint), one fetch at a time, and keep the last good
    key set when a fetch fails. An unknown ``kid`` that cannot be looked up now raises
    :class:`KeySetNotCurrent` (the caller answers 503), rather than being declared unknown. Only
    ``kty`` RSA keys with ``use`` ``sig`` (or no ``use``) and no ``alg`` other than RS256 are used.
    A successful fetch replaces the set, so a key Azure removed
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
