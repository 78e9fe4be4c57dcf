"""What one receiver app owns while it runs, reachable as ``app.state.receiver``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from receiver.auth.jwks import JwksCache
    from receiver.auth.tokens import TokenVerifier
    from receiver.dispatch.dispatcher import Dispatcher
    from receiver.dispatch.ops_watch import OpsWatcher
    from receiver.itsm.base import Backend
    from receiver.observability.metrics import ReceiverMetrics
    from receiver.settings import ReceiverSettings
    from receiver.storage import InboxStore
    from receiver.storage.postgres.lease import DispatchLease


@dataclass
class ReceiverState:
    """Everything one app owns; reachable as ``app.state.receiver`` (tests, demo, benchmarks)."""

    settings: ReceiverSettings
    backend: Backend
    verifier: TokenVerifier
    jwks: JwksCache
    owns_jwks: bool
    inbox: InboxStore
    dispatcher: Dispatcher
    metrics: ReceiverMetrics
    ops_watcher: OpsWatcher | None = None
    """The :class:`~receiver.dispatch.ops_watch.OpsWatcher` while the app runs."""
    dispatch_lease: DispatchLease | None = None
    """PostgreSQL: the :class:`~receiver.storage.postgres.lease.DispatchLease` of this replica."""
    shutting_down: bool = False
    started: bool = False
    in_flight: int = 0
    startup_error: Exception | None = None
    """Why the lifespan's start failed (logged once, as one line); the runner picks its exit code."""
