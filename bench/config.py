"""What a benchmark run measures and for how long: one validated object, a full and a quick preset."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class BenchConfig(BaseModel):
    """Durations, rates and sizes of one ``python -m bench`` run."""

    results_dir: Path = Path("bench/results")
    flat_seconds: float = Field(default=10.0, gt=0, le=300)
    flat_connections: int = Field(default=64, ge=1, le=1024)
    use_wrk: bool = True
    """Flat-out load with wrk (apt-installed when missing and possible); else the asyncio generator."""
    rates: list[float] = Field(default_factory=lambda: [100.0, 500.0, 1000.0, 2000.0], min_length=1)
    rate_seconds: float = Field(default=10.0, gt=0, le=300)
    rate_max_connections: int = Field(default=512, ge=1, le=4096)
    storm_alerts: int = Field(default=20_000, ge=10, le=200_000)
    storm_repeat_fraction: float = Field(default=0.10, ge=0, lt=1)
    storm_connections: int = Field(default=200, ge=1, le=1024)
    drain_timeout_seconds: float = Field(default=300.0, gt=0)
    """How long to wait for the dispatcher to turn accepted alerts into work items."""
    tokens: int = Field(default=4, ge=1, le=64)
    """Distinct bearer tokens, reused round-robin (half v1, half v2) as Azure reuses its tokens."""
    layers: bool = True
    """Also run flat out against the receiver with parts of its work off (bench.receiver_variants)."""
    profile_seconds: float = Field(default=10.0, ge=0, le=120)
    """py-spy sampling of the receiver under flat-out load; 0 skips profiling."""
    program_rule_counts: list[int] = Field(default_factory=lambda: [10, 100, 1000, 5000])
    program_repeats: int = Field(default=5, ge=1, le=10)
    """Runs per (program, N), in rounds; the fastest wall time and the smallest peak memory are reported.

    Several rounds because on a shared machine single runs of the same program vary widely, in wall
    and CPU time alike (docs/benchmarks.md, "How the program cost is measured")."""
    drain_alerts: int = Field(default=5000, ge=10, le=100_000)
    """Distinct alerts of the drain scenario (bench/servicenow_drain.py)."""
    drain_rate_limit: float = Field(default=25.0, gt=0, le=1000)
    """Requests per second the ServiceNow stand-in allows (429 with Retry-After beyond)."""
    drain_delay_seconds: float = Field(default=0.15, ge=0, le=5)
    """How long the stand-in takes to answer each API request."""
    drain_probe_rate: float = Field(default=10.0, gt=0, le=1000)
    """Repeated deliveries per second sent while draining, to measure the 202 latency."""
    receiver: bool = True
    program: bool = True
    drain: bool = True
    stores: bool = True
    """The inbox stores beside their durable baselines (bench.stores): SQLite, PostgreSQL with 1 and 2 replicas."""

    @classmethod
    def quick(cls, **overrides: object) -> BenchConfig:
        """A smoke run of well under a minute: same machinery, tiny durations and sizes."""
        values: dict[str, object] = {
            "flat_seconds": 1.0,
            "flat_connections": 16,
            "rates": [100.0, 500.0],
            "rate_seconds": 1.0,
            "rate_max_connections": 64,
            "storm_alerts": 500,
            "storm_connections": 32,
            "drain_timeout_seconds": 60.0,
            "profile_seconds": 0.0,
            # The smoke run installs nothing: the asyncio generator is always there.
            "use_wrk": False,
            "program_rule_counts": [10, 50],
            "program_repeats": 1,
            "drain_alerts": 100,
        }
        values.update(overrides)
        return cls.model_validate(values)
