"""``python -m bench --quick``: the whole machinery end to end (never a timed assertion)."""

import json
import subprocess
import sys
from pathlib import Path

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
