"""Receiver load scenarios (flat out, the layers, fixed rates, storm, profile), each run the same way
against the receiver and the baseline, every server and load generator in its own process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import profiling, workitems
from bench.config import BenchConfig
from bench.loadgen import LoadSpec
from bench.receiver_variants import VARIANTS
from bench.servers import ServerProcess, baseline_process, receiver_process
from bench.stats import summarize_ms
from bench.wrk import ensure_wrk, run_wrk

Progress = Callable[[str], None]


def run_load_process(spec: LoadSpec, workdir: Path, name: str) -> dict[str, Any]:
    """Run one load in its own process and return its samples."""
    spec_path, result_path = workdir / f"{name}.spec.json", workdir / f"{name}.result.json"
    spec_path.write_text(spec.model_dump_json())
    budget = (spec.duration if spec.mode != "storm" else 600.0) + spec.timeout + 120.0
    completed = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", str(spec_path), str(result_path)],
        capture_output=True,
        text=True,
        timeout=budget,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"load generator for {name} failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def wait_for_work_items(
    db_path: Path, expected_total: int, instances: list[str], timeout: float
) -> tuple[dict[str, float], float]:
    """Wait until every alert instance in ``instances`` has its work item; return their apply times and the wait.

    A cheap count (every Fired event applied so far against ``expected_total``) is polled twice a
    second first; then the instances themselves are checked, because a request the load generator
    gave up on may still have been stored and counted.
    """
    start = time.monotonic()
    while workitems.fired_count(db_path) < expected_total and time.monotonic() - start < timeout:
        time.sleep(0.5)
    applied = workitems.applied_times(db_path, instances)
    while len(applied) < len(set(instances)) and time.monotonic() - start < timeout:
        time.sleep(1.0)
        applied = workitems.applied_times(db_path, instances)
    return applied, time.monotonic() - start


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition → ``{"name{labels}": value}`` (comments dropped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return values


def token_counters(metrics: dict[str, float]) -> dict[str, float]:
    """The receiver's token-verification counters (RSA verifications, cache hits), whatever their labels."""
    found: dict[str, float] = {}
    for name, value in metrics.items():
        if re.search(r"(rsa|signature|verif|token_cache|cache_hit)", name) and not name.endswith("_created"):
            found[name] = value
    return found


class ReceiverBench:
    """Runs every receiver scenario and collects the figures."""

    def __init__(self, config: BenchConfig, progress: Progress) -> None:
        self.config = config
        self.progress = progress
        self._seed = 1000
        self.expected_fired = 0
        """Distinct alerts the receiver accepted so far: the Fired events its backend must apply."""
        self.receiver_requests = 0
        """Requests sent to the receiver in all (retries included), to set beside its RSA counter."""

    def _next_seed(self) -> int:
        self._seed += 1
        return self._seed

    def run(self) -> dict[str, Any]:
        """Start the issuer and both servers, run every scenario, stop everything."""
        from receiver.demo.local_issuer import LocalIssuer

        config = self.config
        with tempfile.TemporaryDirectory(prefix="secure-export-bench-") as temp, LocalIssuer() as issuer:
            workdir = Path(temp)
            db_path = workdir / "receiver.db"
            tokens = [issuer.mint(version=1 if i % 2 == 0 else 2, lifetime=3600) for i in range(config.tokens)]
            settings_env = {
                "SECURE_EXPORT_TENANT_ID": issuer.tenant_id,
                "SECURE_EXPORT_AUDIENCES": ",".join(issuer.audiences),
                "SECURE_EXPORT_JWKS_URI": issuer.jwks_uri,
                "SECURE_EXPORT_DB": str(db_path),
                "SECURE_EXPORT_ITSM": "embedded",
                "SECURE_EXPORT_CORRELATION": "alert",
            }
            # Server logs stay in the temporary folder, out of the results; a server that fails to
            # start reports its log tail in the error.
            log_dir = workdir / "logs"
            receiver = receiver_process(log_dir, settings_env)
            baseline = baseline_process(log_dir)
            self.progress("starting receiver and baseline servers")
            with receiver, baseline:
                ready_status, _ = receiver.get("/readyz")
                figures: dict[str, Any] = {"receiver_ready": ready_status == 200, "tokens": len(tokens)}
                wrk_path = ensure_wrk(self.progress) if config.use_wrk else None
                client = "wrk (C, 1 thread)" if wrk_path else "asyncio generator (python -m bench.loadgen)"
                figures["flat"] = self._flat(receiver, baseline, tokens, workdir, db_path, wrk_path, client)
                if config.layers:
                    figures["layers"] = self._layers(tokens, workdir, settings_env, wrk_path, client)
                figures["rates"] = [
                    self._rate(rate, receiver, baseline, tokens, workdir, db_path) for rate in config.rates
                ]
                figures["storm"] = self._storm(receiver, tokens, workdir, db_path)
                if config.profile_seconds > 0:
                    figures["profile"] = self._profile(receiver, tokens, workdir, db_path)
                status, metrics_text = receiver.get("/metrics")
                metrics = parse_metrics(metrics_text) if status == 200 else {}
                figures["token_verification"] = {
                    "distinct_tokens_sent": len(tokens),
                    "requests_sent": self.receiver_requests,
                    "counters": token_counters(metrics),
                }
                figures["metrics_status"] = status
                figures["peak_rss_bytes"] = {
                    "receiver": receiver.peak_rss_bytes(),
                    "baseline": baseline.peak_rss_bytes(),
                }
            return figures

    def _spec(self, port: int, tokens: list[str], **values: Any) -> LoadSpec:
        return LoadSpec(port=port, tokens=tokens, seed=self._next_seed(), **values)

    def _flat(
        self,
        receiver: ServerProcess,
        baseline: ServerProcess,
        tokens: list[str],
        workdir: Path,
        db_path: Path,
        wrk_path: str | None,
        client: str,
    ) -> dict[str, Any]:
        config = self.config
        result: dict[str, Any] = {
            "connections": config.flat_connections,
            "seconds": config.flat_seconds,
            "client": client,
        }
        for server in (baseline, receiver):
            entry, accepted_ids, sent = self._flat_one(server, tokens, workdir, wrk_path, client)
            if server is receiver:
                self.receiver_requests += sent
                self.expected_fired += entry["accepted"]
                applied, waited = wait_for_work_items(
                    db_path, self.expected_fired, accepted_ids or [], config.drain_timeout_seconds
                )
                if accepted_ids is not None:
                    entry["work_items_missing"] = len(set(accepted_ids)) - len(applied)
                entry["drain_after_load_s"] = round(waited, 2)
            result[server.name] = entry
        base = result["baseline"]["accepted_per_s"]
        result["ratio_receiver_to_baseline"] = round(result["receiver"]["accepted_per_s"] / base, 3) if base else None
        base_cpu, receiver_cpu = (
            result["baseline"]["server_cpu_us_per_accepted"],
            result["receiver"]["server_cpu_us_per_accepted"],
        )
        result["cpu_per_alert_ratio_receiver_to_baseline"] = (
            round(receiver_cpu / base_cpu, 2) if base_cpu and receiver_cpu else None
        )
        return result

    def _flat_one(
        self, server: ServerProcess, tokens: list[str], workdir: Path, wrk_path: str | None, client: str
    ) -> tuple[dict[str, Any], list[str] | None, int]:
        """Flat-out load on one server: its figures, the accepted alert ids (asyncio client only), requests sent."""
        config = self.config
        self.progress(
            f"flat out against the {server.name}: {config.flat_connections} connections "
            f"for {config.flat_seconds:.0f} s ({client})"
        )
        seed = self._next_seed()
        threads_before = profiling.thread_cpu_seconds(server.pid)
        machine_before = profiling.machine_cpu_ticks()
        if wrk_path:
            figures = run_wrk(
                wrk_path, server.port, tokens, seed, config.flat_seconds, config.flat_connections, workdir
            )
            accepted, elapsed = figures["accepted"], figures["elapsed_s"]
            statuses = {"202": accepted, "other": figures["other"], "socket_errors": figures["errors"]}
            latency = {
                "count": figures["requests"],
                **{f"{key}_ms": round(figures["latency_us"][key] / 1000.0, 3) for key in ("p50", "p95", "p99", "max")},
            }
            accepted_ids: list[str] | None = None
            sent = figures["requests"]
        else:
            spec = LoadSpec(
                port=server.port, tokens=tokens, seed=seed, mode="flat",
                duration=config.flat_seconds, concurrency=config.flat_connections,
            )  # fmt: skip
            samples = run_load_process(spec, workdir, f"flat-{server.name}")
            accepted, elapsed = samples["statuses"].get("202", 0), samples["elapsed_s"]
            statuses, latency = samples["statuses"], summarize_ms(samples["latencies_s"])
            accepted_ids = samples["accepted_ids"]
            sent = sum(samples["statuses"].values())
        used = profiling.thread_cpu_used(threads_before, profiling.thread_cpu_seconds(server.pid))
        machine_busy = profiling.machine_busy_share(machine_before, profiling.machine_cpu_ticks())
        cpu_used = sum(used.values())
        event_loop = used.get(server.pid, 0.0)
        entry: dict[str, Any] = {
            "accepted_per_s": round(accepted / elapsed, 1),
            "accepted": accepted,
            # CPU the server process spent per accepted alert during the load (all threads; for
            # the receiver, dispatching to the backend meanwhile included): steadier than
            # throughput when other work shares the cores.
            "server_cpu_us_per_accepted": round(cpu_used / accepted * 1e6, 1) if accepted else None,
            # The event loop's thread holds the GIL for the request path: its share is the ceiling.
            "event_loop_cpu_us_per_accepted": round(event_loop / accepted * 1e6, 1) if accepted else None,
            "other_threads_cpu_us_per_accepted": round((cpu_used - event_loop) / accepted * 1e6, 1)
            if accepted
            else None,
            "server_cores_used": round(cpu_used / elapsed, 2),
            # The whole machine (server, load generator, kernel): near 100% means the cores, not
            # the server alone, set the figure.
            "machine_cpu_busy_share": machine_busy,
            "statuses": statuses,
            "latency": latency,
        }
        return entry, accepted_ids, sent

    def _layers(
        self, tokens: list[str], workdir: Path, settings_env: dict[str, str], wrk_path: str | None, client: str
    ) -> dict[str, Any]:
        """Flat out against the receiver with parts of its work switched off (bench.receiver_variants):
        where the gap to the baseline goes. Each variant is a fresh process with its own database."""
        rows: dict[str, Any] = {}
        for variant in VARIANTS:
            env = dict(settings_env, SECURE_EXPORT_DB=str(workdir / f"layers-{variant}.db"))
            with receiver_process(workdir / "logs", env, variant=variant) as server:
                entry, _, _ = self._flat_one(server, tokens, workdir, wrk_path, client)
            rows[variant] = entry
        return {"client": client, "seconds": self.config.flat_seconds, "variants": rows}

    def _rate(
        self,
        rate: float,
        receiver: ServerProcess,
        baseline: ServerProcess,
        tokens: list[str],
        workdir: Path,
        db_path: Path,
    ) -> dict[str, Any]:
        config = self.config
        result: dict[str, Any] = {"offered_per_s": rate, "seconds": config.rate_seconds}
        for server in (baseline, receiver):
            self.progress(f"{rate:.0f}/s offered to the {server.name} for {config.rate_seconds:.0f} s")
            spec = self._spec(
                server.port,
                tokens,
                mode="rate",
                rate=rate,
                duration=config.rate_seconds,
                concurrency=config.rate_max_connections,
            )
            samples = run_load_process(spec, workdir, f"rate{rate:.0f}-{server.name}")
            if server is receiver:
                self.receiver_requests += len(samples["statuses"])
            statuses = Counter(samples["statuses"])
            latencies = samples["latencies_s"]
            entry: dict[str, Any] = {
                "statuses": {str(k): v for k, v in statuses.items()},
                "latency": summarize_ms(latencies),
                "over_10s": sum(1 for value in latencies if value >= 10.0) + statuses.get(0, 0),
                "achieved_per_s": round(statuses.get(202, 0) / samples["elapsed_s"], 1),
                "peak_connections": samples["peak_connections"],
            }
            if server is receiver:
                accepted_ids = [i for i, s in zip(samples["ids"], samples["statuses"], strict=True) if s == 202]
                self.expected_fired += len(set(accepted_ids))
                applied, waited = wait_for_work_items(
                    db_path, self.expected_fired, accepted_ids, config.drain_timeout_seconds
                )
                scheduled = dict(zip(samples["ids"], samples["scheduled_wall"], strict=True))
                lags = [applied[i] - scheduled[i] for i in accepted_ids if i in applied]
                entry["work_item_lag"] = summarize_ms(lags)
                entry["work_items_missing"] = len(accepted_ids) - len(applied)
                entry["drain_after_load_s"] = round(waited, 2)
            result[server.name] = entry
        base_p99 = result["baseline"]["latency"]["p99_ms"]
        recv_p99 = result["receiver"]["latency"]["p99_ms"]
        result["p99_ratio_receiver_to_baseline"] = round(recv_p99 / base_p99, 2) if base_p99 else None
        return result

    def _storm(self, receiver: ServerProcess, tokens: list[str], workdir: Path, db_path: Path) -> dict[str, Any]:
        config = self.config
        self.progress(
            f"storm: {config.storm_alerts} alerts at once ({config.storm_repeat_fraction:.0%} repeated deliveries) "
            f"over {config.storm_connections} connections"
        )
        spec = self._spec(
            receiver.port, tokens, mode="storm", count=config.storm_alerts,
            repeat_fraction=config.storm_repeat_fraction, concurrency=config.storm_connections,
        )  # fmt: skip
        samples = run_load_process(spec, workdir, "storm")
        self.receiver_requests += samples["deliveries"] + samples["retries"]
        distinct = samples["distinct_ids"]
        accepted = samples["accepted_distinct_ids"]
        self.expected_fired += len(accepted)
        _, waited = wait_for_work_items(db_path, self.expected_fired, accepted, config.drain_timeout_seconds)
        applied = workitems.applied_times(db_path, distinct)
        all_exist_s = (max(applied.values()) - samples["start_wall"]) if len(applied) == len(distinct) else None
        census = workitems.work_item_census(db_path, distinct)
        return {
            "deliveries": samples["deliveries"],
            "distinct_alerts": len(distinct),
            "distinct_alerts_accepted": len(accepted),
            "final_statuses": samples["final_statuses"],
            "retries": samples["retries"],
            "all_answered_s": round(samples["answered_s"], 3),
            "all_work_items_exist_s": round(all_exist_s, 3) if all_exist_s is not None else None,
            "latency": summarize_ms(samples["latencies_s"]),
            "waited_for_work_items_after_answers_s": round(waited, 2),
            "work_items": census,
            "exactly_one_each": census["with_one_work_item"] == len(distinct),
        }

    def _profile(self, receiver: ServerProcess, tokens: list[str], workdir: Path, db_path: Path) -> dict[str, Any]:
        config = self.config
        raw_path = config.results_dir / "profile-receiver.txt"
        self.progress(f"profiling the receiver with py-spy under flat-out load for {config.profile_seconds:.0f} s")
        sampler = profiling.start(receiver.pid, config.profile_seconds, raw_path)
        if sampler is None:
            return {"error": "py-spy is not installed (pip install py-spy): no profile taken"}
        time.sleep(0.5)
        spec = self._spec(
            receiver.port, tokens, mode="flat", duration=config.profile_seconds, concurrency=config.flat_connections
        )
        cpu_before, started = profiling.thread_cpu_seconds(receiver.pid), time.monotonic()
        samples = run_load_process(spec, workdir, "profile")
        cpu = profiling.cpu_share(
            receiver.pid, cpu_before, profiling.thread_cpu_seconds(receiver.pid), time.monotonic() - started
        )
        self.receiver_requests += sum(samples["statuses"].values())
        _, stderr = sampler.communicate(timeout=config.profile_seconds + 60)
        self.expected_fired += len(set(samples["accepted_ids"]))
        wait_for_work_items(db_path, self.expected_fired, samples["accepted_ids"], config.drain_timeout_seconds)
        if sampler.returncode != 0 or not raw_path.exists():
            return {"error": f"py-spy failed ({sampler.returncode}): {stderr.decode(errors='replace')[-500:]}"}
        summary = profiling.summarize(raw_path)
        summary["raw_stacks"] = str(raw_path)
        summary["mode"] = "py-spy --gil (samples only the thread holding the GIL)"
        summary["cpu"] = cpu
        summary["accepted_per_s_while_profiled"] = round(samples["statuses"].get("202", 0) / samples["elapsed_s"], 1)
        return summary
