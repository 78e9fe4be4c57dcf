"""The report writer: targets judged from the figures, the table, the JSON and the PNG."""

import json
from pathlib import Path
from typing import Any

from bench import report
from bench.profiling import summarize


def _latency(p99: float) -> dict[str, Any]:
    return {"count": 100, "p50_ms": p99 / 4, "p95_ms": p99 / 2, "p99_ms": p99, "max_ms": p99 * 2}


def _results(tmp_path: Path, *, receiver_per_s: float, p99_at_500: float, missing: int) -> dict[str, Any]:
    rate_rows = []
    for rate, p99 in ((100.0, 2.0), (500.0, p99_at_500)):
        rate_rows.append(
            {
                "offered_per_s": rate,
                "baseline": {"latency": _latency(1.0), "over_10s": 0},
                "receiver": {"latency": _latency(p99), "over_10s": 0, "work_item_lag": _latency(p99 * 3)},
                "p99_ratio_receiver_to_baseline": p99,
            }
        )
    comparison = {
        "wall_ratio": 1.2,
        "cpu_ratio": 1.11,
        "memory_ratio": 1.125,
        "per_rule_wall_ratio": 1.0,
        "per_rule_cpu_ratio": 1.0,
    }
    program_row = {
        "rules": 10,
        "components": {"wall_s": 1.2, "cpu_s": 1.0, "peak_rss_mib": 90.0, "resources": 27},
        "plain": {"wall_s": 1.0, "cpu_s": 0.9, "peak_rss_mib": 80.0, "resources": 10},
        "plain-full": {"wall_s": 1.0, "cpu_s": 0.9, "peak_rss_mib": 85.0, "resources": 22},
        "comparisons": {"plain": dict(comparison), "plain-full": dict(comparison)},
    }  # fmt: skip
    return {
        "machine": report.machine(),
        "finished_at": report.finished_at(),
        "outputs": {"json": str(tmp_path / "latest.json"), "png": str(tmp_path / "latest.png")},
        "receiver": {
            "flat": {
                "connections": 8,
                "seconds": 1.0,
                "baseline": {"accepted_per_s": 1000.0, "latency": _latency(1.0)},
                "receiver": {"accepted_per_s": receiver_per_s, "latency": _latency(5.0)},
                "ratio_receiver_to_baseline": receiver_per_s / 1000.0,
            },  # fmt: skip
            "rates": rate_rows,
            "storm": {
                "deliveries": 110,
                "distinct_alerts": 100,
                "final_statuses": {"202": 110},
                "retries": 0,
                "all_answered_s": 0.5,
                "all_work_items_exist_s": 0.9,
                "latency": _latency(3.0),
                "work_items": {
                    "distinct_alerts": 100,
                    "with_one_work_item": 100 - missing,
                    "missing": missing,
                    "duplicated": 0,
                },
                "exactly_one_each": missing == 0,
            },  # fmt: skip
            "token_verification": {
                "distinct_tokens_sent": 4,
                "requests_sent": 500,
                "counters": {'secure_export_token_verifications_total{result="rsa"}': 4.0},
            },  # fmt: skip
            "peak_rss_bytes": {"receiver": 80 * 2**20, "baseline": 40 * 2**20},
        },
        "program": {
            "fixed": {kind: dict(program_row[kind], rules=0) for kind in ("components", "plain", "plain-full")},
            "rows": [program_row],
            "growth": {},
        },
    }


def test_targets_follow_the_figures(tmp_path: Path) -> None:
    good = {
        row["target"]: row["met"]
        for row in report.targets(_results(tmp_path, receiver_per_s=600.0, p99_at_500=20.0, missing=0))
    }
    assert all(good.values()), good
    bad = report.targets(_results(tmp_path, receiver_per_s=400.0, p99_at_500=30.0, missing=1))
    missed = {row["target"] for row in bad if row["met"] is False}
    assert any("throughput" in target for target in missed)
    assert any("p99" in target for target in missed)
    assert any("storm" in target for target in missed)


def test_program_targets_judge_each_baseline_on_its_own(tmp_path: Path) -> None:
    results = _results(tmp_path, receiver_per_s=600.0, p99_at_500=20.0, missing=0)
    row = results["program"]["rows"][0]
    # The literal baseline missed, the like-for-like one met: each verdict stays with its own label.
    row["comparisons"]["plain"]["wall_ratio"] = 2.26
    verdicts = {t["target"]: t["met"] for t in report.targets(results) if t["target"].startswith("program cost <=")}
    assert len(verdicts) == 2
    literal = next(target for target in verdicts if "literal" in target)
    like_for_like = next(target for target in verdicts if "like-for-like" in target)
    assert verdicts[literal] is False and verdicts[like_for_like] is True
    text = report.table(dict(results, targets=report.targets(results)))
    assert "plain-full" in text and "[MISSED] program cost" in text and "2.26" in text


def test_table_json_and_png_are_written(tmp_path: Path) -> None:
    results = _results(tmp_path, receiver_per_s=600.0, p99_at_500=20.0, missing=0)
    results["targets"] = report.targets(results)
    report.write_json(results, tmp_path / "latest.json")
    report.plot(results, tmp_path / "latest.png")
    text = report.table(results)
    assert json.loads((tmp_path / "latest.json").read_text())["receiver"]["storm"]["distinct_alerts"] == 100
    assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{results['machine']['cores']} cores" in text
    assert "accepted alerts/s" in text and "Targets:" in text and "[   MET]" in text


def test_profile_summary_ranks_frames(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "main (receiver/cli/commands.py:10);post_alert (receiver/http/app.py:20);"
        "raw_decode (/usr/lib/python3.11/json/decoder.py:353) 30\n"
        "main (receiver/cli/commands.py:10);post_alert (receiver/http/app.py:20) 10\n"
    )
    summary = summarize(raw)
    assert summary["samples"] == 40
    assert summary["top_self"][0] == {"frame": "raw_decode (json/decoder.py)", "samples": 30, "percent": 75.0}
    inclusive = {entry["frame"]: entry["samples"] for entry in summary["top_inclusive_receiver"]}
    assert inclusive["post_alert (receiver/http/app.py)"] == 40


def _every_section(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` with every optional section of the report filled in, and a fixed machine and time."""
    results["machine"] = {
        "cores": 2,
        "cpu": "Test CPU @ 2.00GHz",
        "python": "3.11.7",
        "load_average_at_start": [0.5, 0.25, 0.1],
    }
    results["finished_at"] = "2026-01-02T03:04:05Z"
    results["outputs"] = {"json": "bench/results/latest.json", "png": "bench/results/latest.png"}
    receiver = results["receiver"]
    flat = receiver["flat"]
    flat["client"] = "wrk"
    flat["cpu_per_alert_ratio_receiver_to_baseline"] = 3.25
    for name, cpu_us, cores, busy in (("baseline", 80.0, 0.95, 0.97), ("receiver", 260.0, 1.4, 0.99)):
        flat[name].update(server_cpu_us_per_accepted=cpu_us, server_cores_used=cores, machine_cpu_busy_share=busy)
    layer = {
        "server_cpu_us_per_accepted": 120.0,
        "event_loop_cpu_us_per_accepted": 100.0,
        "other_threads_cpu_us_per_accepted": 20.0,
        "machine_cpu_busy_share": 0.98,
    }
    receiver["layers"] = {
        "variants": {
            "answer-only": dict(layer, accepted_per_s=900.0),
            "no-storage": dict(layer, accepted_per_s=800.0),
            "no-dispatch": dict(layer, accepted_per_s=700.0),
        }
    }
    receiver["profile"] = {
        "accepted_per_s_while_profiled": 1234.0,
        "cpu": {"process_cores": 1.25, "event_loop_thread_cores": 0.98, "other_threads_cores": 0.27},
        "samples": 12345,
        "self_by_package": [{"percent": 41.5, "frame": "receiver"}, {"percent": 20.0, "frame": "uvicorn"}],
        "top_self": [{"percent": 12.25, "frame": "raw_decode (json/decoder.py)"}],
    }
    growth = {
        "ms_per_rule": 1.5,
        "fixed_s": 2.25,
        "r_squared": 0.9991,
        "cpu": {"ms_per_rule": 1.25, "r_squared": 0.998},
    }
    results["program"]["growth"] = {"components": growth, "plain": dict(growth, ms_per_rule=1.0)}
    results["drain"] = {
        "alerts": 100,
        "deliveries": 111,
        "storm_statuses": {"202": 111},
        "storm_answered_s": 0.8,
        "rate_limit_per_s": 25.0,
        "response_delay_ms": 150.0,
        "last_incident_s": 9.1,
        "api_requests": 230,
        "api_requests_429": 12,
        "requests_per_incident": 2.18,
        "bound_s": 8.7,
        "ratio_to_bound": 1.046,
        "bound_two_requests_per_incident_s": 8.0,
        "probe": {"rate_per_s": 10.0, "seconds": 8.0, "statuses": {"202": 80}, "latency": _latency(6.0)},
        "incidents": {"distinct_alerts": 100, "with_one_incident": 100, "missing": 0, "duplicated": 0},
        "inbox": {"done": 100, "parked": 0},
        "exactly_one_each": True,
    }
    store_row = {
        "row": "sqlite, 1 replica",
        "baseline": {"accepted_per_s": 900.0, "latency": _latency(8.0)},
        "receiver": {"accepted_per_s": 600.0, "latency": _latency(12.0)},
        "ratio_receiver_to_durable_baseline": 0.667,
    }
    results["stores"] = {"rows": [store_row], "postgresql": "not measured: no initdb", "target_ratio": 0.5}
    results["targets"] = report.targets(results)
    return results


def test_full_table_is_pinned(tmp_path: Path) -> None:
    # Every section and target line, byte for byte: reformatting the code must not change the report.
    results = _every_section(_results(tmp_path, receiver_per_s=600.0, p99_at_500=20.0, missing=0))
    expected = (Path(__file__).parent / "report_table.txt").read_text()
    assert report.table(results) + "\n" == expected
