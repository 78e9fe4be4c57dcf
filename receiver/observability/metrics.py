"""Prometheus metrics of one receiver app, on a registry of its own (names: docs/receiver.md, "Metrics")."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_KNOWN_ROUTES = frozenset({"/api/alerts", "/healthz", "/readyz", "/metrics"})


def route_label(path: str) -> str:
    """Bounded label for a request path: fuzzers must not create unbounded series."""
    return path if path in _KNOWN_ROUTES else "other"


class ScrapedCounters(Collector):
    """Counters owned by other objects, read through the typed interfaces below at scrape time."""

    def __init__(self) -> None:
        self._sources: list[tuple[str, str, Callable[[], Iterable[tuple[dict[str, str], float]]]]] = []

    def add(self, name: str, documentation: str, read: Callable[[], Iterable[tuple[dict[str, str], float]]]) -> None:
        self._sources.append((name, documentation, read))

    def collect(self) -> Iterable[Metric]:
        for name, documentation, read in self._sources:
            samples = list(read())
            labels = sorted(samples[0][0]) if samples else []
            family = CounterMetricFamily(name, documentation, labels=labels)
            for label_values, value in samples:
                family.add_metric([label_values[key] for key in labels], value)
            yield family


class InboxCounters(Protocol):
    """What an inbox store reports (both stores implement it; mypy checks the binding)."""

    commits: int
    rows_written: int
    write_failures: int
    lock_waits: int
    lock_wait_seconds: float

    def depth(self) -> int: ...

    def parked(self) -> int: ...


class VerifierCounters(Protocol):
    """What the token verifier reports."""

    rsa_verifications: int
    cache_hits: int


class KeySetCounters(Protocol):
    """What the signing-key cache reports."""

    fetches: int
    fetch_errors: int


class DispatchCounters(Protocol):
    """What the dispatcher reports."""

    pauses: int
    paused_reason: str | None


class ReceiverMetrics:
    """All metrics of one app; ``render()`` gives the Prometheus text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "secure_export_http_requests", "HTTP answers by route and status", ["route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "secure_export_http_request_duration_seconds",
            "Time to answer, by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.alerts_accepted = Counter(
            "secure_export_alerts_accepted",
            "Alerts answered 202, by monitor condition and whether it was a repeated delivery",
            ["condition", "duplicate"],
            registry=r,
        )
        self.backend_calls = Counter(
            "secure_export_backend_calls", "Backend apply calls by outcome", ["backend", "outcome"], registry=r
        )
        self.backend_errors = Counter(
            "secure_export_backend_errors", "Backend failures by exception class", ["backend", "kind"], registry=r
        )
        self.parked = Counter(
            "secure_export_dispatch_parked", "Inbox rows parked as failed, by reason", ["reason"], registry=r
        )
        self.in_flight = Gauge(
            "secure_export_http_requests_in_flight", "Requests being answered now (the scrape included)", registry=r
        )
        self.inbox_depth = Gauge("secure_export_inbox_depth", "Inbox rows waiting for the backend", registry=r)
        self.inbox_parked = Gauge("secure_export_inbox_parked", "Inbox rows parked as failed", registry=r)
        self.dispatch_paused = Gauge(
            "secure_export_dispatch_paused",
            "1 while dispatching is paused because the backend reported not ready, else 0",
            registry=r,
        )
        self._objects = ScrapedCounters()
        r.register(self._objects)
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *label_values: str) -> Any:
        """``metric.labels(*label_values)``, looked up once per combination.

        ``labels()`` costs microseconds (it validates and joins the values under a lock); the hot
        path counts every request, accepted alert and backend call through here.
        """
        key = (metric, label_values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*label_values)
        return found

    def answered(self, route: str, status: int, seconds: float) -> None:
        """Count one answer of ``route`` (a :func:`route_label`) with ``status``, and its duration."""
        self.child(self.requests, route, str(status)).inc()
        self.child(self.request_seconds, route).observe(seconds)

    def bind_requests(self, in_flight: Callable[[], int]) -> None:
        """Report the number of requests being answered right now (including the scrape itself)."""
        self.in_flight.set_function(lambda: float(in_flight()))

    def bind_inbox(self, inbox: InboxCounters) -> None:
        """Read depth, parked rows and commit counters from the inbox at scrape time."""
        self.inbox_depth.set_function(lambda: float(inbox.depth()))
        self.inbox_parked.set_function(lambda: float(inbox.parked()))
        self._objects.add(
            "secure_export_inbox_commits",
            "Inbox transactions committed (one fsync each)",
            lambda: [({}, float(inbox.commits))],
        )
        self._objects.add(
            "secure_export_inbox_rows_written",
            "New inbox rows committed",
            lambda: [({}, float(inbox.rows_written))],
        )
        self._objects.add(
            "secure_export_inbox_write_failures",
            "Inbox transactions that failed (answered 503)",
            lambda: [({}, float(inbox.write_failures))],
        )
        self._objects.add(
            "secure_export_inbox_lock_waits",
            "Inbox transactions that waited for another connection's lock",
            lambda: [({}, float(inbox.lock_waits))],
        )
        self._objects.add(
            "secure_export_inbox_lock_wait_seconds",
            "Time inbox transactions spent waiting for the lock",
            lambda: [({}, float(inbox.lock_wait_seconds))],
        )

    def bind_auth(self, verifier: VerifierCounters, jwks: KeySetCounters) -> None:
        """Read token verification and JWKS fetch counters at scrape time."""
        self._objects.add(
            "secure_export_token_verifications",
            "Token verification work, not accepted tokens: result=rsa counts every RS256 signature check "
            "(failed checks and tokens then refused for a claim included); result=cache_hit counts tokens "
            "accepted from the verified-token cache without a check. Accepted alerts: alerts_accepted_total",
            lambda: [
                ({"result": "rsa"}, float(verifier.rsa_verifications)),
                ({"result": "cache_hit"}, float(verifier.cache_hits)),
            ],
        )
        self._objects.add(
            "secure_export_jwks_fetches",
            "HTTP fetches of the signing keys, failed ones included",
            lambda: [({}, float(jwks.fetches))],
        )
        self._objects.add(
            "secure_export_jwks_fetch_errors",
            "Fetches of the signing keys that failed (the keys held stay in use)",
            lambda: [({}, float(jwks.fetch_errors))],
        )

    def bind_dispatcher(self, dispatcher: DispatchCounters) -> None:
        """Report whether dispatching is paused now, and how often it paused, at scrape time.

        A pause (backend not ready) leaves rows pending with no backend call and no error counted,
        so without these the only sign on ``/metrics`` would be a growing ``inbox_depth``.
        """
        self.dispatch_paused.set_function(lambda: 0.0 if dispatcher.paused_reason is None else 1.0)
        self._objects.add(
            "secure_export_dispatch_pauses",
            "Times dispatching paused because the backend reported not ready",
            lambda: [({}, float(dispatcher.pauses))],
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
