"""The inbox stores under load: SQLite and PostgreSQL (one and two replicas), each beside its
durable baseline (docs/benchmarks.md, "Inbox stores").
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.loadgen import LoadSpec
from bench.receiver_load import run_load_process
from bench.servers import ServerProcess, free_port, receiver_process
from bench.stats import summarize_ms

Progress = Callable[[str], None]
TARGET_STORE_RATIO = 0.5
"""Issue #12: the receiver at no less than half its durable baseline's accepted throughput, per store."""


def _durable_baseline(log_dir: Path, db: str, name: str) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "bench.durable_baseline", "--host", "127.0.0.1", "--port", str(port), "--db", db]
    return ServerProcess(name, argv, port, os.environ, log_dir / f"{name}.log")


class StoresBench:
    """Runs the store rows and collects accepted/s and the 202's p99 for each."""

    def __init__(self, config: BenchConfig, progress: Progress) -> None:
        self.config = config
        self.progress = progress
        self._seed = 5000

    def _load(self, servers: list[ServerProcess], tokens: list[str], workdir: Path, name: str) -> dict[str, Any]:
        """Flat-out load split over ``servers``; accepted/s summed, latency percentiles over all samples."""
        config = self.config
        share = max(1, config.flat_connections // len(servers))
        specs = []
        for server in servers:
            self._seed += 1
            specs.append(
                LoadSpec(
                    port=server.port,
                    tokens=tokens,
                    seed=self._seed,
                    mode="flat",
                    duration=config.flat_seconds,
                    concurrency=share,
                )
            )
        with ThreadPoolExecutor(max_workers=len(specs)) as pool:
            samples = list(
                pool.map(lambda pair: run_load_process(pair[1], workdir, f"{name}-{pair[0]}"), enumerate(specs))
            )
        accepted = sum(s["statuses"].get("202", 0) for s in samples)
        elapsed = max(s["elapsed_s"] for s in samples)
        latencies = [value for s in samples for value in s["latencies_s"]]
        other = sum(count for s in samples for status, count in s["statuses"].items() if status != "202")
        return {
            "servers": len(servers),
            "accepted_per_s": round(accepted / elapsed, 1) if elapsed else 0.0,
            "accepted": accepted,
            "not_accepted": other,
            "latency": summarize_ms(latencies),
        }

    def _row(
        self,
        label: str,
        receivers: list[ServerProcess],
        baselines: list[ServerProcess],
        tokens: list[str],
        workdir: Path,
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"row": label}
        for role, servers in (("baseline", baselines), ("receiver", receivers)):
            self.progress(f"stores: {label}: flat out against the {role} ({len(servers)} server(s))")
            for server in servers:
                server.start()
            try:
                row[role] = self._load(servers, tokens, workdir, f"{label}-{role}")
            finally:
                for server in servers:
                    server.stop()
        base = row["baseline"]["accepted_per_s"]
        row["ratio_receiver_to_durable_baseline"] = round(row["receiver"]["accepted_per_s"] / base, 3) if base else None
        return row

    def run(self) -> dict[str, Any]:
        """Start the issuer and a PostgreSQL cluster, run the rows, stop everything."""
        from receiver.demo.local_issuer import LocalIssuer

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.support.postgres import running_cluster, unavailable_reason

        reason = unavailable_reason()
        rows: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="secure-export-stores-") as temp, LocalIssuer() as issuer:
            workdir = Path(temp)
            log_dir = workdir / "logs"
            tokens = [issuer.mint(lifetime=3600) for _ in range(self.config.tokens)]
            base_env = {
                "SECURE_EXPORT_TENANT_ID": issuer.tenant_id,
                "SECURE_EXPORT_AUDIENCES": ",".join(issuer.audiences),
                "SECURE_EXPORT_JWKS_URI": issuer.jwks_uri,
                "SECURE_EXPORT_ITSM": "embedded",
                "SECURE_EXPORT_LOG_LEVEL": "WARNING",
            }
            sqlite_receiver = receiver_process(log_dir, {**base_env, "SECURE_EXPORT_DB": str(workdir / "receiver.db")})
            rows.append(
                self._row(
                    "sqlite, 1 replica",
                    [sqlite_receiver],
                    [_durable_baseline(log_dir, str(workdir / "baseline.db"), "durable-sqlite")],
                    tokens,
                    workdir,
                )
            )
            if reason is not None:
                return {"rows": rows, "postgresql": f"not measured: {reason}", "target_ratio": TARGET_STORE_RATIO}
            with running_cluster() as cluster:
                for replicas in (1, 2):
                    receiver_url = cluster.url(cluster.create_database("bench_rx"))
                    baseline_url = cluster.url(cluster.create_database("bench_base"))
                    env = {**base_env, "SECURE_EXPORT_DB": receiver_url}
                    receivers = [receiver_process(log_dir, env) for _ in range(replicas)]
                    for index, server in enumerate(receivers):
                        server.name = f"receiver-pg{replicas}-{index}"
                        server.log_path = log_dir / f"{server.name}.log"
                    baselines = [
                        _durable_baseline(log_dir, baseline_url, f"durable-pg{replicas}-{i}") for i in range(replicas)
                    ]
                    rows.append(
                        self._row(
                            f"postgresql, {replicas} replica{'s' if replicas > 1 else ''}",
                            receivers,
                            baselines,
                            tokens,
                            workdir,
                        )
                    )
        return {"rows": rows, "target_ratio": TARGET_STORE_RATIO}


def targets(stores: dict[str, Any]) -> list[dict[str, Any]]:
    """One target row per store row: receiver >= half its durable baseline."""
    found = []
    for row in stores.get("rows", []):
        ratio = row.get("ratio_receiver_to_durable_baseline")
        found.append(
            {
                "target": f"{row['row']}: accepted/s >= {TARGET_STORE_RATIO:.0%} of its durable baseline",
                "figure": "n/a"
                if ratio is None
                else f"{ratio:.1%} ({row['receiver']['accepted_per_s']}/s vs {row['baseline']['accepted_per_s']}/s)",
                "met": None if ratio is None else ratio >= TARGET_STORE_RATIO,
            }
        )
    return found


def table(stores: dict[str, Any]) -> list[str]:
    """The stores section of the printed report."""
    lines = [
        "",
        "Inbox stores (flat out, receiver vs its durable baseline)",
        f"{'row':<24}{'baseline/s':>12}{'p99 ms':>10}{'receiver/s':>12}{'p99 ms':>10}{'ratio':>8}",
    ]
    for row in stores.get("rows", []):
        b, r = row["baseline"], row["receiver"]
        ratio = row.get("ratio_receiver_to_durable_baseline")
        lines.append(
            f"{row['row']:<24}{b['accepted_per_s']:>12}{b['latency']['p99_ms'] or 0:>10}"
            f"{r['accepted_per_s']:>12}{r['latency']['p99_ms'] or 0:>10}{'' if ratio is None else f'{ratio:.2f}':>8}"
        )
    if "postgresql" in stores:
        lines.append(f"postgresql: {stores['postgresql']}")
    return lines
