"""The load generator against real servers on 127.0.0.1: the baseline, and one that answers 503."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.loadgen import LoadSpec, run_load
from bench.servers import ServerProcess, baseline_process


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with baseline_process(tmp_path_factory.mktemp("baseline")) as server:
        yield server


def test_flat_out_counts_every_answer(baseline: ServerProcess) -> None:
    result = run_load(LoadSpec(port=baseline.port, tokens=["t1", "t2"], mode="flat", duration=0.5, concurrency=4))
    accepted = result["statuses"].get("202", 0)
    assert accepted > 0
    assert accepted == sum(result["statuses"].values()) == len(result["accepted_ids"]) == len(result["latencies_s"])
    assert len(set(result["accepted_ids"])) == accepted
    assert result["peak_connections"] == 4


def test_open_loop_sends_on_schedule(baseline: ServerProcess) -> None:
    result = run_load(LoadSpec(port=baseline.port, tokens=["t"], mode="rate", rate=40, duration=0.5, concurrency=8))
    assert len(result["ids"]) == 20
    assert result["statuses"] == [202] * 20
    assert all(latency > 0 for latency in result["latencies_s"])
    scheduled = result["scheduled_wall"]
    assert scheduled == sorted(scheduled)
    assert abs((scheduled[-1] - scheduled[0]) - 19 / 40) < 1e-6


def test_storm_repeats_a_fraction_of_deliveries(baseline: ServerProcess) -> None:
    result = run_load(
        LoadSpec(port=baseline.port, tokens=["t"], mode="storm", count=200, repeat_fraction=0.1, concurrency=16)
    )
    assert result["deliveries"] == 200
    assert len(result["distinct_ids"]) == len(set(result["distinct_ids"])) == 180
    assert result["final_statuses"] == {"202": 200}
    assert result["retries"] == 0


class _Busy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"error":"busy","detail":"try again"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def test_storm_retries_what_azure_retries(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        spec = LoadSpec(
            port=server.server_address[1], tokens=["t"], mode="storm", count=10, repeat_fraction=0.0,
            concurrency=2, attempts=3, retry_backoff=0.0,
        )  # fmt: skip
        result = run_load(spec)
    finally:
        server.shutdown()
        server.server_close()
    assert result["final_statuses"] == {"503": 10}
    assert result["retries"] == 20


def test_wrk_script_sends_the_generator_bodies_and_tokens() -> None:
    from bench.payloads import templates
    from bench.wrk import script

    text = script(["tok-a", "tok-b"], seed=9)
    first = templates()[0]
    assert first.head.decode() in text and first.tail.decode() in text
    assert "[==[tok-a]==]" in text and "[==[tok-b]==]" in text
    assert "local seed = 9" in text


def test_wrk_flat_out_against_the_baseline(baseline: ServerProcess, tmp_path: Path) -> None:
    import shutil

    from bench.wrk import run_wrk

    executable = shutil.which("wrk")
    if executable is None:
        pytest.skip("wrk is not installed (python -m bench installs it from Debian's packages)")
    figures = run_wrk(executable, baseline.port, ["t"], seed=3, seconds=1, connections=4, workdir=tmp_path)
    assert figures["accepted"] > 0
    assert figures["other"] == 0
    assert figures["requests"] == figures["accepted"]
