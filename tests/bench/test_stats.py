"""Nearest-rank percentiles used for every latency figure."""

from bench.stats import percentile, summarize_ms


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) is None


def test_summary_is_in_milliseconds() -> None:
    summary = summarize_ms([0.003, 0.001, 0.002])
    assert summary == {"count": 3, "p50_ms": 2.0, "p95_ms": 3.0, "p99_ms": 3.0, "max_ms": 3.0}
    assert summarize_ms([])["p99_ms"] is None
