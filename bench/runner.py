"""One benchmark run: both halves, then the JSON, the PNG and the table."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

from bench import program_cost, report, servicenow_drain
from bench.config import BenchConfig
from bench.receiver_load import ReceiverBench


def _guarded(name: str, progress: Callable[[str], None], body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one half; a failure is reported in the results (and the exit status), not as a traceback."""
    try:
        return body()
    except Exception as error:  # noqa: BLE001 — one half failing must not lose the other's figures
        progress(f"{name} failed: {error}")
        sys.stderr.write(traceback.format_exc())
        return {"error": f"{type(error).__name__}: {error}"}


def run(config: BenchConfig, progress: Callable[[str], None]) -> int:
    """Run what ``config`` enables, write ``latest.json`` and ``latest.png``, print the table."""
    results_dir = config.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = results_dir / "latest.json", results_dir / "latest.png"
    results: dict[str, Any] = {
        "machine": report.machine(),
        "config": config.model_dump(mode="json"),
        "outputs": {"json": str(json_path), "png": str(png_path)},
    }
    progress(f"machine: {results['machine']['cores']} cores, Python {results['machine']['python']}")
    if config.receiver:
        results["receiver"] = _guarded("receiver benchmark", progress, lambda: ReceiverBench(config, progress).run())
    if config.program:
        results["program"] = _guarded("program-cost benchmark", progress, lambda: program_cost.run(config, progress))
    if config.drain:
        results["drain"] = _guarded(
            "servicenow drain benchmark", progress, lambda: servicenow_drain.run(config, progress)
        )
    if config.stores:
        from bench.stores import StoresBench

        results["stores"] = _guarded("stores benchmark", progress, lambda: StoresBench(config, progress).run())
    results["finished_at"] = report.finished_at()
    results["targets"] = report.targets(results)
    report.write_json(results, json_path)
    report.plot(results, png_path)
    print(report.table(results))
    failed = any("error" in results.get(half, {}) for half in ("receiver", "program", "drain", "stores"))
    return 1 if failed else 0
