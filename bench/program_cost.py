"""Program cost: the offline plan of a stack with N alert rules against the two plain programs,
each in a fresh process (wall time including imports, CPU time, peak memory).

Child: ``python -m bench.program_cost KIND RULES`` prints one JSON object; KIND is ``components``,
``plain`` or ``plain-full`` (docs/benchmarks.md, "How the program cost is measured").
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.config import BenchConfig

KINDS = ("components", "plain", "plain-full")
BASELINES: dict[str, str] = {
    "plain": "literal: the N metric alerts only",
    "plain-full": "like-for-like: the stack's resources and the N alerts, no components",
}
"""The programs the components are compared with, and what each declares."""


def _peak_rss_kib() -> int:
    """This process's peak resident set (``VmHWM``).

    Not ``getrusage``: Linux carries the parent's high-water mark across fork and exec into the
    child's ``ru_maxrss``, so a child of a big parent would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # pragma: no cover — not Linux


def _measure(kind: str, rules: int) -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"unknown program kind {kind!r}; expected one of {KINDS}")
    with tempfile.TemporaryDirectory(prefix="secure-export-bench-stack-") as temp:
        stack_file = None
        if kind == "components":
            from bench.stack_program import write_stack_file

            stack_file = write_stack_file(Path(temp), rules)
        return _timed(kind, rules, stack_file)


def _timed(kind: str, rules: int, stack_file: Path | None) -> dict[str, Any]:
    start, cpu_start = time.perf_counter(), time.process_time()
    # Every kind imports the same SDK module before the clock for the program part starts.
    import pulumi_azure_native.monitor  # noqa: F401

    from bench.stack_program import run_generated_stack, run_plain

    imported = time.perf_counter()
    resources = run_generated_stack(stack_file) if stack_file is not None else run_plain(kind, rules)
    done, cpu_done = time.perf_counter(), time.process_time()
    return {
        "kind": kind,
        "rules": rules,
        "resources": resources,
        "wall_s": round(done - start, 4),
        "program_s": round(done - imported, 4),
        # CPU seconds of every thread (the mock engine registers resources on a thread pool): the
        # figure that other processes competing for the 2 cores disturb least.
        "cpu_s": round(cpu_done - cpu_start, 4),
        "peak_rss_mib": round(_peak_rss_kib() / 1024.0, 1),
    }


def measure_in_child(kind: str, rules: int, timeout: float = 900.0) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (clean imports, its own peak memory)."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "bench.program_cost", kind, str(rules)], capture_output=True, text=True, timeout=timeout
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{kind} program with {rules} rules failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - started, 4)
    return result


def _fit(points: list[tuple[int, float]]) -> dict[str, float]:
    """Least-squares line through (rules, seconds): fixed cost, cost per rule, R^2."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx if sxx else 0.0
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for _, y in points)
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in points)
    return {
        "fixed_s": round(intercept, 4),
        "ms_per_rule": round(slope * 1000.0, 4),
        "r_squared": round(1.0 - ss_res / ss_tot, 5) if ss_tot else 1.0,
    }


def _measure_all(rules: int, repeats: int, progress: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Every program at ``rules``, best of ``repeats`` rounds.

    Each round runs the programs one after another, so a burst of other load on the shared cores
    lands on one round of every program rather than on every run of one program.
    """
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for round_ in range(repeats):
        for kind in KINDS:
            progress(f"program cost: {kind} program with {rules:,} rules (run {round_ + 1} of {repeats})")
            runs[kind].append(measure_in_child(kind, rules))
    return {kind: _best(kind_runs) for kind, kind_runs in runs.items()}


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run (least disturbed by other load), with the smallest CPU time and peak memory of all."""
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    best["cpu_s"] = min(r["cpu_s"] for r in runs)
    best["peak_rss_mib"] = min(r["peak_rss_mib"] for r in runs)
    # Every run's wall time, in round order: the spread a single run would have been read from.
    best["wall_runs_s"] = [r["wall_s"] for r in runs]
    return best


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


def _comparison(row: dict[str, Any], fixed: dict[str, Any], baseline: str) -> dict[str, float | None]:
    """Components against one baseline at one N: whole-program ratios, and per-rule ratios (fixed parts taken off)."""
    components, plain = row["components"], row[baseline]
    return {
        "wall_ratio": _ratio(components["wall_s"], plain["wall_s"]),
        "cpu_ratio": _ratio(components["cpu_s"], plain["cpu_s"]),
        "memory_ratio": _ratio(components["peak_rss_mib"], plain["peak_rss_mib"]),
        # What the rules themselves cost in each program, each program's 0-rule cost taken off.
        "per_rule_wall_ratio": _ratio(
            components["wall_s"] - fixed["components"]["wall_s"], plain["wall_s"] - fixed[baseline]["wall_s"]
        ),
        "per_rule_cpu_ratio": _ratio(
            components["cpu_s"] - fixed["components"]["cpu_s"], plain["cpu_s"] - fixed[baseline]["cpu_s"]
        ),
    }


def run(config: BenchConfig, progress: Callable[[str], None]) -> dict[str, Any]:
    """Measure every program at N = 0 (the fixed part) and every configured N; ratios per baseline and linear fits."""
    # N = 0 is the fixed part: imports, and for the stack and plain-full the identity, receiver and action group.
    fixed = _measure_all(0, config.program_repeats, progress)
    rows = []
    for rules in config.program_rule_counts:
        row: dict[str, Any] = {"rules": rules, **_measure_all(rules, config.program_repeats, progress)}
        row["comparisons"] = {baseline: _comparison(row, fixed, baseline) for baseline in BASELINES}
        rows.append(row)
    growth: dict[str, Any] = {}
    if len(rows) >= 2:
        for kind in KINDS:
            growth[kind] = _fit([(row["rules"], row[kind]["wall_s"]) for row in rows])
            growth[kind]["cpu"] = _fit([(row["rules"], row[kind]["cpu_s"]) for row in rows])
    return {
        "fixed": fixed,
        "rows": rows,
        "growth": growth,
        "baselines": BASELINES,
        "repeats": config.program_repeats,
    }


def main(argv: list[str] | None = None) -> int:
    """Child entry: measure one (kind, rules) and print it as JSON."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in KINDS or not args[1].isdigit():
        sys.stderr.write(f"usage: python -m bench.program_cost {{{'|'.join(KINDS)}}} RULES\n")
        return 2
    print(json.dumps(_measure(args[0], int(args[1]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
