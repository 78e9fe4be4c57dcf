"""``python -m bench --quick``: the whole machinery end to end (never a timed assertion)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import BenchConfig
from bench.program_cost import measure_in_child


def test_quick_receiver_run_writes_json_png_and_table(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "receiver", "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert (tmp_path / "latest.png").stat().st_size > 0
    receiver = results["receiver"]
    storm = receiver["storm"]
    # Correctness, not speed: every distinct alert of the storm has exactly one work item.
    assert storm["work_items"]["with_one_work_item"] == storm["distinct_alerts"] > 0
    assert receiver["flat"]["receiver"]["accepted"] > 0
    assert receiver["token_verification"]["counters"], "the receiver exposes its token-verification counters"
    assert "accepted alerts/s" in completed.stdout
    assert "[bench" in completed.stderr  # progress lines
    # The layers: each variant served real requests (its handler really ran) with 202s only.
    variants = receiver["layers"]["variants"]
    assert set(variants) == {"answer-only", "no-storage", "no-dispatch"}
    for name, row in variants.items():
        assert row["accepted"] > 0 and set(row["statuses"]) <= {"202"}, (name, row["statuses"])
    assert "where the gap goes" in completed.stdout


def test_receiver_variants_switch_off_only_their_layer(tmp_path: Path) -> None:
    # no-dispatch stores every alert and hands none to the backend; no-storage stores nothing.
    from bench.receiver_variants import main

    assert main(["bogus"]) == 2
    probe = (
        "import sys, bench.receiver_variants as v; v.apply(sys.argv[1]);"
        "from receiver.storage.sqlite.inbox import Inbox;"
        "from receiver.dispatch.dispatcher import Dispatcher;"
        "from receiver.http.alerts import AlertEndpoint;"
        "print(Inbox.put.__module__, Dispatcher.notify.__module__, AlertEndpoint._answer.__module__)"
    )
    seen = {}
    for variant in ("answer-only", "no-storage", "no-dispatch"):
        completed = subprocess.run([sys.executable, "-c", probe, variant], capture_output=True, text=True, check=True)
        seen[variant] = completed.stdout.split()
    assert seen["answer-only"] == [
        "receiver.storage.sqlite.inbox",
        "receiver.dispatch.dispatcher",
        "bench.receiver_variants",
    ]
    assert seen["no-storage"] == ["bench.receiver_variants", "receiver.dispatch.dispatcher", "receiver.http.alerts"]
    assert seen["no-dispatch"] == ["receiver.storage.sqlite.inbox", "bench.receiver_variants", "receiver.http.alerts"]


def test_program_cost_children_plan_every_program() -> None:
    components = measure_in_child("components", 3)
    plain = measure_in_child("plain", 3)
    full = measure_in_child("plain-full", 3)
    assert plain["resources"] == 3
    # The stack declares its fixed resources (identity, receiver, action group) plus the 3 rules;
    # plain-full the same resources without the five component resources.
    assert components["resources"] > 3
    assert full["resources"] == components["resources"] - 5
    assert components["peak_rss_mib"] > 0 and plain["wall_s"] > 0 and full["cpu_s"] > 0


def test_program_cost_runs_in_rounds_and_reports_the_fastest(monkeypatch: pytest.MonkeyPatch) -> None:
    # The selection only: which runs happen in which order, and which one is reported.
    from bench import program_cost

    walls = iter([3.0, 1.0, 2.0, 2.5, 1.5, 0.5, 2.8, 1.2, 2.2])
    calls: list[tuple[str, int]] = []

    def fake_child(kind: str, rules: int, timeout: float = 900.0) -> dict[str, object]:
        calls.append((kind, rules))
        wall = next(walls)
        return {"kind": kind, "rules": rules, "wall_s": wall, "cpu_s": wall + 0.01, "peak_rss_mib": 100 - wall}

    monkeypatch.setattr(program_cost, "measure_in_child", fake_child)
    best = program_cost._measure_all(7, 3, lambda message: None)
    assert calls == [(kind, 7) for _ in range(3) for kind in program_cost.KINDS]
    assert best["components"]["wall_s"] == 2.5 and best["components"]["wall_runs_s"] == [3.0, 2.5, 2.8]
    assert best["plain"]["wall_s"] == 1.0 and best["plain"]["cpu_s"] == 1.01
    assert best["plain-full"]["wall_s"] == 0.5 and best["plain-full"]["peak_rss_mib"] == 97.8


def test_program_repeats_come_from_the_command_line() -> None:
    from bench.__main__ import main

    with pytest.raises(SystemExit) as refused:
        main(["--program-repeats", "0"])
    assert refused.value.code == 2
    assert BenchConfig().program_repeats == 5
    assert BenchConfig.quick().program_repeats == 1
