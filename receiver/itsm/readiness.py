"""The ``/readyz`` answer of a remote ITSM tool: one bounded probe, cached, and refused credentials remembered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from receiver.itsm.base import CredentialsRejected, PermanentBackendError, Readiness, TransientBackendError


class ReadinessProbe:
    """Probes the tool at most once per ``ttl`` seconds; an outage leaves the receiver ready on purpose.

    Alerts must keep reaching the inbox while the tool is down (the dispatcher retries); only refused
    credentials make the backend not ready.
    """

    def __init__(self, tool: str, *, ttl: float, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._tool = tool
        self._ttl = ttl
        self._timeout = timeout
        self._clock = clock
        self._cached: tuple[float, Readiness] | None = None

    def cached(self) -> Readiness | None:
        """The last answer while it is fresh, else None."""
        if self._cached is not None and self._clock() < self._cached[0]:
            return self._cached[1]
        return None

    def remember(self, result: Readiness) -> None:
        """Keep ``result`` as the answer for the next ``ttl`` seconds."""
        self._cached = (self._clock() + self._ttl, result)

    def credentials_rejected(self, error: CredentialsRejected) -> None:
        """A request was refused for its credentials: not ready, with the tool's reason."""
        self.remember(Readiness(False, str(error)))

    async def probe(self, request: Callable[[], Awaitable[object]]) -> Readiness:
        """Send ``request`` (bounded below the receiver's own ``/readyz`` budget) and remember the answer."""
        tool = self._tool
        try:
            # A slow tool is an outage, not a reason to take the receiver out of the load balancer.
            async with asyncio.timeout(self._timeout):
                await request()
            result = Readiness(True)
        except CredentialsRejected as error:
            result = Readiness(False, str(error))
        except TimeoutError:
            result = Readiness(True, f"{tool} is slow to answer; alerts wait in the inbox")
        except TransientBackendError as error:
            result = Readiness(True, f"{tool} unreachable, alerts wait in the inbox: {error}")
        except PermanentBackendError:
            result = Readiness(True)  # authenticated; the probed table or form may simply be hidden from this user
        self.remember(result)
        return result
