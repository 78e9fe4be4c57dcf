"""The benchmark's outputs: ``latest.json`` (every figure, with the machine), a PNG plot, and the
table printed at the end of ``make bench`` with each target marked met or missed."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

TARGET_THROUGHPUT_RATIO = 0.50
TARGET_P99_MS_AT_500 = 25.0
TARGET_PROGRAM_RATIO = 1.3
AZURE_TIMEOUT_MS = 10_000.0

_PACKAGES = (
    "starlette",
    "uvicorn",
    "httptools",
    "uvloop",
    "orjson",
    "pyjwt",
    "cryptography",
    "pydantic",
    "pulumi",
    "pulumi-azure-native",
)


def machine() -> dict[str, Any]:
    """Where the figures were measured: cores, CPU, Python and the versions that matter."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
        "load_average_at_start": [round(value, 2) for value in load],
    }


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with the measured figure and whether it is met."""
    rows: list[dict[str, Any]] = []
    receiver = results.get("receiver")
    if receiver and "error" not in receiver:
        ratio = receiver["flat"].get("ratio_receiver_to_baseline")
        rows.append(
            {
                "target": f"durable accepted throughput >= {TARGET_THROUGHPUT_RATIO:.0%} of baseline",
                "figure": f"{ratio:.1%}" if ratio is not None else "n/a",
                "met": None if ratio is None else ratio >= TARGET_THROUGHPUT_RATIO,
            }
        )
        at_500 = next((r for r in receiver["rates"] if r["offered_per_s"] == 500), None)
        if at_500 is not None:
            p99 = at_500["receiver"]["latency"]["p99_ms"]
            rows.append(
                {
                    "target": f"p99 of the 202 <= {TARGET_P99_MS_AT_500:.0f} ms at 500/s",
                    "figure": f"{p99} ms",
                    "met": p99 is not None and p99 <= TARGET_P99_MS_AT_500,
                }
            )
        over = sum(r["receiver"]["over_10s"] for r in receiver["rates"])
        worst = max((r["receiver"]["latency"]["max_ms"] or 0.0) for r in receiver["rates"])
        rows.append(
            {
                "target": "no request over Azure's 10 s at any tested rate",
                "figure": f"{over} over; worst {worst} ms",
                "met": over == 0 and worst < AZURE_TIMEOUT_MS,
            }
        )
        storm = receiver["storm"]
        census = storm["work_items"]
        rows.append(
            {
                "target": "storm: exactly one work item per distinct alert, none lost",
                "figure": f"{census['with_one_work_item']}/{census['distinct_alerts']} "
                f"(missing {census['missing']}, duplicated {census['duplicated']})",
                "met": storm["exactly_one_each"],
            }
        )
        tokens = receiver["token_verification"]
        rsa = {k: v for k, v in tokens["counters"].items() if "rsa" in k.lower() or "signature" in k.lower()}
        rsa_total = sum(rsa.values()) if rsa else None
        rows.append(
            {
                "target": "a repeated token costs no RSA verification",
                "figure": (
                    f"{rsa_total:.0f} RSA verifications for {tokens['requests_sent']} requests "
                    f"with {tokens['distinct_tokens_sent']} tokens"
                    if rsa_total is not None
                    else "receiver exposes no RSA-verification counter in /metrics"
                ),
                "met": None if rsa_total is None else rsa_total <= tokens["distinct_tokens_sent"],
            }
        )
    program = results.get("program")
    if program and "error" not in program and program.get("rows"):
        rows.extend(_program_targets(program))
    drain = results.get("drain")
    if drain and "error" not in drain:
        from bench.servicenow_drain import targets as drain_targets

        rows.extend(drain_targets(drain))
    stores = results.get("stores")
    if stores and "error" not in stores:
        from bench.stores import targets as store_targets

        rows.extend(store_targets(stores))
    return rows


_PROGRAM_TARGET_LABELS = {
    "plain": "literal baseline: the plain program of N MetricAlerts only",
    "plain-full": "like-for-like baseline: the stack's resources declared directly (plain-full)",
}


def _program_targets(program: dict[str, Any]) -> list[dict[str, Any]]:
    """The 1.3x target judged against each baseline (each labelled with what it declares), and linearity."""
    rows: list[dict[str, Any]] = []
    for baseline, label in _PROGRAM_TARGET_LABELS.items():
        compared = [
            (row["rules"], row["comparisons"][baseline])
            for row in program["rows"]
            if baseline in row.get("comparisons", {})
        ]
        walls = [(n, c["wall_ratio"]) for n, c in compared if c.get("wall_ratio") is not None]
        if not walls:
            continue
        worst_n, worst = max(walls, key=lambda item: item[1])
        cpu = [c["cpu_ratio"] for _, c in compared if c.get("cpu_ratio") is not None]
        figure = f"worst {worst:.2f}x (at N={worst_n:,})"
        if cpu:
            figure += f"; cpu worst {max(cpu):.2f}x"
        # Per rule from the slopes of the linear fits: at small N the difference of two runs'
        # per-rule parts is mostly noise.
        growth = program.get("growth", {})
        if "components" in growth and baseline in growth and growth[baseline]["ms_per_rule"] > 0:
            slope = growth["components"]["ms_per_rule"] / growth[baseline]["ms_per_rule"]
            figure += f"; per rule (fitted slopes) {slope:.2f}x"
        rows.append(
            {
                "target": f"program cost <= {TARGET_PROGRAM_RATIO}x the plain program at every N (wall), {label}",
                "figure": figure,
                "met": worst <= TARGET_PROGRAM_RATIO,
            }
        )
    growth = program.get("growth", {}).get("components")
    if growth:
        rows.append(
            {
                "target": "program cost linear in N",
                "figure": f"R^2 {growth['r_squared']:.4f}, {growth['ms_per_rule']:.2f} ms/rule",
                "met": growth["r_squared"] >= 0.98,
            }
        )
    return rows


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write every figure (and the machine) as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _lat(summary: dict[str, Any] | None) -> str:
    if not summary or not summary.get("count"):
        return "-"
    return "/".join(_fmt(summary[key], 1) for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))


def _program_table(program: dict[str, Any]) -> list[str]:
    """The program-cost lines of the table: the fixed part, then per N each program and both comparisons."""
    fixed = program["fixed"]
    kinds = [kind for kind in ("components", "plain", "plain-full") if kind in fixed]
    lines = [
        "",
        "Program cost: offline plan under the components' Pulumi mocks, a fresh process per run "
        "(wall includes imports;",
        "  cpu = CPU seconds of all threads, least disturbed by other load; "
        "per-rule = minus each program's 0-rule cost)",
        "  baselines: plain = the N MetricAlerts only (literal); plain-full = the stack's resources and the N alerts",
        "  declared directly with the providers, same inputs, no components (like-for-like)",
        "    0 rules (fixed part): "
        + "; ".join(
            f"{kind} {fixed[kind]['wall_s']:.2f} s wall / {fixed[kind]['cpu_s']:.2f} s cpu, "
            f"{fixed[kind]['resources']} resources, {fixed[kind]['peak_rss_mib']:.0f} MiB"
            for kind in kinds
        ),
        f"    {'rules':>6}  {'wall/cpu s:':<11}{'components':>14}  {'plain':>12}  {'plain-full':>12}"
        f"  {'vs':<10} {'ratio wall/cpu':>14}  {'per-rule':>11}  {'mem':>5}",
    ]
    for row in program["rows"]:
        cells = "  ".join(
            f"{row[kind]['wall_s']:>6.2f}/{row[kind]['cpu_s']:<{7 if kind == 'components' else 5}.2f}"
            if kind in row
            else f"{'-':>12}"
            for kind in ("components", "plain", "plain-full")
        )
        comparisons = row.get("comparisons", {})
        for index, baseline in enumerate(comparisons):
            c = comparisons[baseline]
            prefix = f"    {row['rules']:>6,}  {'':<11}{cells}" if index == 0 else " " * (4 + 6 + 2 + 11 + len(cells))
            lines.append(
                f"{prefix}  {baseline:<10} {_fmt(c['wall_ratio'], 2):>6}/{_fmt(c['cpu_ratio'], 2):<7}  "
                f"{_fmt(c['per_rule_wall_ratio'], 2):>5}/{_fmt(c['per_rule_cpu_ratio'], 2):<5}  "
                f"{_fmt(c['memory_ratio'], 2):>5}"
            )
    for kind, growth in program.get("growth", {}).items():
        cpu = growth.get("cpu", {})
        lines.append(
            f"    {kind}: wall {growth['ms_per_rule']:.2f} ms/rule, intercept {growth['fixed_s']:.2f} s "
            f"(R^2 {growth['r_squared']:.4f}); "
            f"cpu {cpu.get('ms_per_rule', 0):.2f} ms/rule (R^2 {cpu.get('r_squared', 0):.4f})"
        )
    return lines


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


_LAYER_LABELS = {
    "baseline": "baseline (reads the body, answers 202)",
    "answer-only": "receiver server, handler only answers",
    "no-storage": "+ token check and schema model",
    "no-dispatch": "+ durable inbox (SQLite, fsync)",
    "receiver": "+ dispatch to the backend (the product)",
}


def _layers_table(layers: dict[str, Any] | None, flat: dict[str, Any]) -> list[str]:
    """Flat out against the receiver with parts of its work off: what each layer costs."""
    if not layers or not layers.get("variants"):
        return []
    rows = {"baseline": flat["baseline"], **layers["variants"], "receiver": flat["receiver"]}
    base = flat["baseline"]["accepted_per_s"]
    lines = [
        "",
        "  where the gap goes: flat out against the receiver with parts of its work switched off",
        "  (bench/receiver_variants.py; server CPU µs per alert: event-loop thread + other threads)",
        f"    {'':42}{'alerts/s':>10}{'vs base':>9}{'CPU µs':>9}{'loop':>7}{'other':>7}{'machine':>9}",
    ]
    for name, row in rows.items():
        lines.append(
            f"    {_LAYER_LABELS.get(name, name):42}{_fmt(row['accepted_per_s'], 0):>10}"
            f"{_fmt(row['accepted_per_s'] / base if base else None, 2):>9}"
            f"{_fmt(row.get('server_cpu_us_per_accepted'), 0):>9}"
            f"{_fmt(row.get('event_loop_cpu_us_per_accepted'), 0):>7}"
            f"{_fmt(row.get('other_threads_cpu_us_per_accepted'), 0):>7}"
            f"{_share(row.get('machine_cpu_busy_share')):>9}"
        )
    return lines


def table(results: dict[str, Any]) -> str:
    """The human-readable summary printed at the end of the run."""
    m = results["machine"]
    lines = [
        "",
        f"secure-export benchmarks  —  {m['cores']} cores ({m['cpu']}), Python {m['python']}, {results['finished_at']}",
        f"load average at start {m['load_average_at_start']}; "
        f"every figure below was measured on these {m['cores']} cores",
    ]
    receiver = results.get("receiver")
    if receiver and "error" not in receiver:
        flat = receiver["flat"]
        lines += [
            "",
            "Receiver vs baseline (same Starlette + uvicorn stack, 1 worker; load generator in its own process)",
            f"  flat out, {flat['connections']} connections, {flat['seconds']:.0f} s, "
            f"client: {flat.get('client', '-')}:",
            f"    {'':24}{'baseline':>14}{'receiver':>14}{'ratio':>8}",
            f"    {'accepted alerts/s':24}"
            f"{_fmt(flat['baseline']['accepted_per_s']):>14}"
            f"{_fmt(flat['receiver']['accepted_per_s']):>14}"
            f"{_fmt(flat['ratio_receiver_to_baseline'], 2):>8}",
            f"    {'latency p50/p95/p99/max':24}"
            f"{_lat(flat['baseline']['latency']):>14}"
            f"  {_lat(flat['receiver']['latency'])}",
            f"    {'server CPU µs per alert':24}"
            f"{_fmt(flat['baseline'].get('server_cpu_us_per_accepted')):>14}"
            f"{_fmt(flat['receiver'].get('server_cpu_us_per_accepted')):>14}"
            f"{_fmt(flat.get('cpu_per_alert_ratio_receiver_to_baseline'), 2):>8}",
            f"    {'server cores used':24}"
            f"{_fmt(flat['baseline'].get('server_cores_used'), 2):>14}"
            f"{_fmt(flat['receiver'].get('server_cores_used'), 2):>14}",
            f"    {'machine CPU busy':24}"
            f"{_share(flat['baseline'].get('machine_cpu_busy_share')):>14}"
            f"{_share(flat['receiver'].get('machine_cpu_busy_share')):>14}",
        ]
        lines += _layers_table(receiver.get("layers"), flat)
        lines += [
            "",
            "  open-loop fixed rates (latency of the 202 from the scheduled send time, ms p50/p95/p99/max):",
            f"    {'offered/s':>9}  {'baseline':<28}  {'receiver':<28}  {'p99 ratio':>9}  {'>10 s':>5}  "
            f"{'work item lag p50/p99/max ms':<28}",
        ]
        for row in receiver["rates"]:
            lag = row["receiver"].get("work_item_lag")
            lag_text = (
                "/".join(_fmt(lag[k], 1) for k in ("p50_ms", "p99_ms", "max_ms")) if lag and lag.get("count") else "-"
            )
            lines.append(
                f"    {row['offered_per_s']:>9,.0f}  "
                f"{_lat(row['baseline']['latency']):<28}  {_lat(row['receiver']['latency']):<28}  "
                f"{_fmt(row['p99_ratio_receiver_to_baseline'], 2):>9}  {row['receiver']['over_10s']:>5}  {lag_text:<28}"
            )
        storm = receiver["storm"]
        census = storm["work_items"]
        lines += [
            "",
            f"  storm: {storm['deliveries']:,} deliveries at once "
            f"({storm['distinct_alerts']:,} distinct alerts, the rest repeated deliveries)",
            f"    all answered in {_fmt(storm['all_answered_s'], 2)} s "
            f"(statuses {storm['final_statuses']}, {storm['retries']} retries); "
            f"all work items exist after {_fmt(storm['all_work_items_exist_s'], 2)} s",
            f"    work items: {census['with_one_work_item']:,} of {census['distinct_alerts']:,} alerts "
            f"have exactly one (missing {census['missing']}, duplicated {census['duplicated']})",
            "",
            f"  peak RSS: receiver {receiver['peak_rss_bytes']['receiver'] / 2**20:,.1f} MiB, "
            f"baseline {receiver['peak_rss_bytes']['baseline'] / 2**20:,.1f} MiB",
            f"  token verification: {receiver['token_verification']['counters'] or 'no counters exposed'} "
            f"for {receiver['token_verification']['requests_sent']:,} requests "
            f"with {receiver['token_verification']['distinct_tokens_sent']} distinct tokens",
        ]
        profile = receiver.get("profile")
        if profile and "error" not in profile:
            cpu = profile.get("cpu", {})
            lines += [
                "",
                "  profile of the receiver under flat-out load "
                f"({profile['accepted_per_s_while_profiled']:,.0f} alerts/s while sampled): "
                f"process used {cpu.get('process_cores', 0):.2f} cores — "
                f"event-loop thread {cpu.get('event_loop_thread_cores', 0):.2f}, "
                f"other threads {cpu.get('other_threads_cores', 0):.2f}",
                f"  where the GIL goes (py-spy --gil, {profile['samples']:,} samples), self time by package:",
            ]
            lines += [f"    {entry['percent']:>5.1f}%  {entry['frame']}" for entry in profile["self_by_package"][:8]]
            lines += ["  hottest frames (self time):"]
            lines += [f"    {entry['percent']:>5.1f}%  {entry['frame']}" for entry in profile["top_self"][:10]]
        elif profile:
            lines += ["", f"  profile: {profile['error']}"]
    elif receiver:
        lines += ["", f"Receiver: not measured — {receiver['error']}"]
    program = results.get("program")
    if program and "error" not in program:
        lines += _program_table(program)
    elif program:
        lines += ["", f"Program cost: not measured — {program['error']}"]
    drain = results.get("drain")
    if drain and "error" not in drain:
        from bench.servicenow_drain import table as drain_table

        lines += drain_table(drain)
    elif drain:
        lines += ["", f"ServiceNow drain: not measured — {drain['error']}"]
    stores = results.get("stores")
    if stores and "error" not in stores:
        from bench.stores import table as stores_table

        lines += stores_table(stores)
    elif stores:
        lines += ["", f"Inbox stores: not measured — {stores['error']}"]
    lines += ["", "Targets:"]
    for row in results.get("targets", []):
        lines.append(f"  [{_verdict(row['met']):>6}] {row['target']}: {row['figure']}")
    lines.append("")
    lines.append(f"Written: {results['outputs']['json']} and {results['outputs']['png']}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Latency percentiles against offered rate (receiver vs baseline), and program cost against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = results["machine"]["cores"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    receiver = results.get("receiver")
    if receiver and "error" not in receiver and receiver.get("rates"):
        rates = [row["offered_per_s"] for row in receiver["rates"]]
        styles = {"p50_ms": ":", "p95_ms": "--", "p99_ms": "-", "max_ms": "-."}
        for server, color in (("receiver", "tab:red"), ("baseline", "tab:blue")):
            for key, style in styles.items():
                values = [row[server]["latency"][key] for row in receiver["rates"]]
                left.plot(rates, values, style, color=color, marker="o", markersize=3, label=f"{server} {key[:-3]}")
        left.axhline(TARGET_P99_MS_AT_500, color="grey", linewidth=0.8)
        left.annotate(
            f"p99 target {TARGET_P99_MS_AT_500:.0f} ms at 500/s",
            (rates[0], TARGET_P99_MS_AT_500),
            fontsize=8,
            color="grey",
        )
        left.set_yscale("log")
        left.set_xlabel("offered alerts per second (open loop)")
        left.set_ylabel("latency of the 202, ms (log)")
        left.legend(fontsize=7, ncol=2)
    else:
        left.text(0.5, 0.5, "receiver not measured", ha="center", transform=left.transAxes)
    left.set_title(f"Receiver vs baseline latency ({cores} cores)")
    program = results.get("program")
    if program and "error" not in program and program.get("rows"):
        counts = [row["rules"] for row in program["rows"]]
        colors = {"components": "tab:red", "plain": "tab:blue", "plain-full": "tab:green"}
        kinds = [kind for kind in colors if all(kind in row for row in program["rows"])]
        twin = right.twinx()
        # (axis, field, line style, alpha, label): time on the left scale, memory on the twin.
        series = (
            (right, "wall_s", "-o", 1.0, "wall s"),
            (right, "cpu_s", "--^", 0.8, "cpu s"),
            (twin, "peak_rss_mib", ":s", 0.6, "peak MiB"),
        )
        for kind in kinds:
            for axis, field, style, alpha, label in series:
                values = [row[kind][field] for row in program["rows"]]
                axis.plot(counts, values, style, color=colors[kind], alpha=alpha, label=f"{kind}: {label}")
        # The wall-time ratios against each baseline, per N, in a box in the lower right corner.
        ratio_lines = [f"components / baseline, wall (target <= {TARGET_PROGRAM_RATIO}x)"]
        for row in program["rows"]:
            ratio_lines.append(
                f"N={row['rules']:,}: "
                + ", ".join(
                    f"{baseline} {_fmt(c.get('wall_ratio'), 2)}x" for baseline, c in row.get("comparisons", {}).items()
                )
            )
        right.text(
            0.98,
            0.03,
            "\n".join(ratio_lines),
            transform=right.transAxes,
            ha="right",
            va="bottom",
            multialignment="left",
            fontsize=7,
            family="monospace",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
        )
        right.set_xscale("log")
        right.set_yscale("log")
        twin.set_yscale("log")
        right.set_xlabel("alert rules (N)")
        right.set_ylabel("seconds (log)")
        twin.set_ylabel("peak memory, MiB (log)")
        handles = right.get_legend_handles_labels()
        twin_handles = twin.get_legend_handles_labels()
        right.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=7, loc="upper left")
    else:
        right.text(0.5, 0.5, "program cost not measured", ha="center", transform=right.transAxes)
    right.set_title(f"Program cost (offline plan) vs rule count ({cores} cores)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def finished_at() -> str:
    """Now, ISO-8601 UTC to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
