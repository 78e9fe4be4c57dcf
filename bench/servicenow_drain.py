"""Draining a storm into a slow, rate-limited ServiceNow stand-in: time to the last incident against
the rate limit's bound, the 202 latency meanwhile, and exactly one incident per alert.

Methodology: docs/benchmarks.md, "How the drain into ServiceNow is measured".
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.loadgen import LoadSpec
from bench.payloads import alert_id, instance_ids
from bench.receiver_load import run_load_process
from bench.servers import receiver_process
from bench.stats import summarize_ms

Progress = Callable[[str], None]
TARGET_DRAIN_RATIO = 1.15
TARGET_DRAIN_P99_MS = 25.0
_USER, _PASSWORD = "svc-secure-export", "bench-password-not-a-secret"
_SEED = 7001


def run(config: BenchConfig, progress: Progress) -> dict[str, Any]:
    """Run the drain scenario once; returns its figures."""
    from receiver.demo.local_issuer import LocalIssuer
    from receiver.itsm.markers import correlation_id
    from receiver.storage.sqlite.inbox import count_by_state
    from tests.support.itsm_fakes.servicenow import FakeServiceNow

    alerts = config.drain_alerts
    count = alerts + alerts // 9  # 10 % of the deliveries repeat an earlier alert (loadgen: int(count * 0.1))
    fake = FakeServiceNow().start()
    fake.add_user(_USER, _PASSWORD)
    with tempfile.TemporaryDirectory(prefix="secure-export-drain-") as temp, LocalIssuer() as issuer:
        workdir = Path(temp)
        db_path = workdir / "receiver.db"
        env = {
            "SECURE_EXPORT_TENANT_ID": issuer.tenant_id,
            "SECURE_EXPORT_AUDIENCES": ",".join(issuer.audiences),
            "SECURE_EXPORT_JWKS_URI": issuer.jwks_uri,
            "SECURE_EXPORT_DB": str(db_path),
            "SECURE_EXPORT_ITSM": "servicenow",
            "SECURE_EXPORT_CORRELATION": "alert",
            "SECURE_EXPORT_SERVICENOW_URL": fake.url,
            "SECURE_EXPORT_SERVICENOW_USERNAME": _USER,
            "SECURE_EXPORT_SERVICENOW_PASSWORD": _PASSWORD,
            "SECURE_EXPORT_LOG_LEVEL": "WARNING",
        }
        tokens = [issuer.mint(lifetime=7200) for _ in range(config.tokens)]
        receiver = receiver_process(workdir / "logs", env)
        try:
            with receiver:
                # Readiness probes and the close_code check ran before the storm; count from here.
                fake.throttle(config.drain_rate_limit, delay=config.drain_delay_seconds)
                baseline = _api_requests(fake)
                progress(
                    f"drain: {alerts} distinct alerts into a ServiceNow stand-in answering in "
                    f"{config.drain_delay_seconds * 1000:.0f} ms and allowing {config.drain_rate_limit:g} requests/s"
                )
                wanted = {correlation_id(alert_id(i)) for i in instance_ids(alerts, _SEED)}
                done = _IncidentWatch(fake, wanted)
                done.start()
                storm = run_load_process(
                    LoadSpec(port=receiver.port, tokens=tokens, mode="storm", count=count, repeat_fraction=0.1,
                             concurrency=config.storm_connections, seed=_SEED),
                    workdir, "drain-storm",
                )  # fmt: skip
                expected_s = 3 * alerts / config.drain_rate_limit
                probe_s = min(600.0, max(5.0, expected_s))
                # Repeats of the storm's own alerts only (the same seed): the probe adds no incident.
                probe_rate = min(config.drain_probe_rate, 0.9 * alerts / probe_s)
                progress(
                    f"drain: storm answered in {storm['answered_s']:.1f} s; probing 202 latency for {probe_s:.0f} s"
                )
                probe = run_load_process(
                    LoadSpec(port=receiver.port, tokens=tokens, mode="rate", rate=probe_rate,
                             duration=probe_s, concurrency=16, seed=_SEED),
                    workdir, "drain-probe",
                )  # fmt: skip
                done.join(timeout=config.drain_timeout_seconds + 2 * expected_s)
                finished_wall = done.finished_wall
                requests = _api_requests(fake) - baseline
                throttled = fake.throttled
                inbox = count_by_state(str(db_path))
        finally:
            fake.stop()
        per_correlation = Counter(row.get("correlation_id") for row in fake.tables["incident"])
    ok_requests = requests - throttled
    drain_s = (finished_wall - storm["start_wall"]) if finished_wall is not None else None
    bound_s = ok_requests / config.drain_rate_limit
    minimum_s = 2 * alerts / config.drain_rate_limit
    probe_latency = summarize_ms(probe["latencies_s"])
    one_each = sum(1 for corr in wanted if per_correlation[corr] == 1)
    return {
        "alerts": alerts,
        "deliveries": storm["deliveries"],
        "storm_statuses": storm["final_statuses"],
        "storm_answered_s": round(storm["answered_s"], 2),
        "rate_limit_per_s": config.drain_rate_limit,
        "response_delay_ms": config.drain_delay_seconds * 1000,
        "last_incident_s": round(drain_s, 1) if drain_s is not None else None,
        "api_requests": requests,
        "api_requests_429": throttled,
        "requests_per_incident": round(ok_requests / max(1, len(wanted)), 2),
        "bound_s": round(bound_s, 1),
        "ratio_to_bound": round(drain_s / bound_s, 3) if drain_s is not None and bound_s else None,
        "bound_two_requests_per_incident_s": round(minimum_s, 1),
        "probe": {
            "rate_per_s": round(probe_rate, 2),
            "seconds": probe_s,
            "statuses": {str(k): v for k, v in Counter(probe["statuses"]).items()},
            "latency": probe_latency,
        },
        "incidents": {
            "distinct_alerts": len(wanted),
            "with_one_incident": one_each,
            "missing": sum(1 for corr in wanted if per_correlation[corr] == 0),
            "duplicated": sum(1 for corr in wanted if per_correlation[corr] > 1),
        },
        "inbox": inbox,
        "exactly_one_each": one_each == len(wanted) and inbox.get("parked", 0) == 0,
    }


def _api_requests(fake: Any) -> int:
    with fake._lock:
        return sum(1 for r in fake.requests if r.path.startswith("/api/"))


class _IncidentWatch(threading.Thread):
    """Notes when the last wanted incident exists (checked five times a second, in this process)."""

    def __init__(self, fake: Any, wanted: set[str]) -> None:
        super().__init__(name="drain-watch", daemon=True)
        self.fake = fake
        self.wanted = wanted
        self.finished_wall: float | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            # Counting is cheap; the set is built only once enough rows exist (this process also
            # serves the stand-in, and its CPU is the receiver's neighbour on the machine).
            with self.fake._lock:
                rows = self.fake.tables["incident"]
                present = {row.get("correlation_id") for row in rows} if len(rows) >= len(self.wanted) else set()
            if present and self.wanted <= present:
                self.finished_wall = time.time()
                return
            time.sleep(0.2)


def targets(drain: dict[str, Any]) -> list[dict[str, Any]]:
    """The drain's targets with the measured figures."""
    ratio = drain.get("ratio_to_bound")
    p99 = drain["probe"]["latency"]["p99_ms"]
    census = drain["incidents"]
    return [
        {
            "target": f"drain: last incident within {TARGET_DRAIN_RATIO}x the rate-limit bound",
            "figure": f"{drain['last_incident_s']} s vs {drain['bound_s']} s "
            f"({ratio}x; {drain['api_requests_429']} 429s)",
            "met": None if ratio is None else ratio <= TARGET_DRAIN_RATIO,
        },
        {
            "target": f"drain: p99 of the 202 <= {TARGET_DRAIN_P99_MS:.0f} ms while draining",
            "figure": f"{p99} ms",
            "met": p99 is not None and p99 <= TARGET_DRAIN_P99_MS,
        },
        {
            "target": "drain: exactly one incident per alert, nothing parked",
            "figure": f"{census['with_one_incident']}/{census['distinct_alerts']} (missing {census['missing']}, "
            f"duplicated {census['duplicated']}); parked {drain['inbox'].get('parked', 0)}",
            "met": drain["exactly_one_each"],
        },
    ]


def table(drain: dict[str, Any]) -> list[str]:
    """Lines for the printed summary."""
    latency = drain["probe"]["latency"]
    return [
        "",
        f"Drain into ServiceNow ({drain['response_delay_ms']:.0f} ms per answer, "
        f"{drain['rate_limit_per_s']:g} requests/s, 429 + Retry-After beyond)",
        f"  {drain['alerts']} distinct alerts ({drain['deliveries']} deliveries) "
        f"answered in {drain['storm_answered_s']} s",
        f"  last incident after {drain['last_incident_s']} s; bound {drain['bound_s']} s "
        f"({drain['requests_per_incident']} requests per incident) -> {drain['ratio_to_bound']}x; "
        f"2-requests-per-incident floor {drain['bound_two_requests_per_incident_s']} s",
        f"  API requests {drain['api_requests']}, of which 429: {drain['api_requests_429']}",
        f"  202 latency while draining ({drain['probe']['rate_per_s']:g}/s repeated deliveries): "
        f"p50 {latency['p50_ms']} p99 {latency['p99_ms']} max {latency['max_ms']} ms",
    ]
