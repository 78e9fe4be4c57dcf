"""Sampling profile of a running server process with py-spy, summarized as the top frames.

Also the per-thread and whole-machine CPU readings from ``/proc`` that the flat-out figures use.
The raw collapsed stacks are kept next to the results for a flame graph.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_LIBRARY_PREFIX = re.compile(r"^.*?(?:site-packages/|/lib/python3\.\d+/)")
_REPOSITORY = str(Path(__file__).resolve().parent.parent) + "/"
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def py_spy_path() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH; ``None`` when not installed."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def start(
    pid: int, seconds: float, raw_path: Path, rate: int = 100, gil: bool = True
) -> subprocess.Popen[bytes] | None:
    """Start sampling ``pid`` for ``seconds`` into ``raw_path``; ``None`` when py-spy is unavailable.

    With ``gil`` only the thread holding the GIL is sampled: in a process whose Python code runs on
    one core at a time, that is where the core goes.
    """
    executable = py_spy_path()
    if executable is None:
        return None
    argv = [
        executable, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
        "--rate", str(rate), "--format", "raw", "--nonblocking", "--output", str(raw_path),
    ]  # fmt: skip
    if gil:
        argv.append("--gil")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each thread of ``pid``, by thread id."""
    result: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Fields after the command name: state is [0], utime [11], stime [12] (proc(5), 14 and 15).
        result[int(task.name)] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return result


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from ``/proc/stat`` (idle and iowait are not busy)."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])  # guest time is already counted in user time
    return total - idle, total


def machine_busy_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """Share of the machine's CPU time that was busy between two :func:`machine_cpu_ticks` readings."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(busy / total, 3) if total > 0 else None


def thread_cpu_used(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    """CPU seconds each thread used between two :func:`thread_cpu_seconds` readings.

    The main thread's id is the pid.
    """
    return {tid: after[tid] - before.get(tid, 0.0) for tid in after}


def cpu_share(pid: int, before: dict[int, float], after: dict[int, float], seconds: float) -> dict[str, float]:
    """Cores used over ``seconds``: the event loop's thread (the main one) and all other threads."""
    used = thread_cpu_used(before, after)
    main = used.get(pid, 0.0)
    others = sorted((value for tid, value in used.items() if tid != pid), reverse=True)
    return {
        "process_cores": round(sum(used.values()) / seconds, 3),
        "event_loop_thread_cores": round(main / seconds, 3),
        "other_threads_cores": round(sum(others) / seconds, 3),
        "busiest_other_thread_cores": round(others[0] / seconds, 3) if others else 0.0,
    }


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    return f"{match['function']} ({_relative(match['file'])})"


def _relative(path: str) -> str:
    """A frame's file relative to site-packages, the standard library or this repository."""
    path = _LIBRARY_PREFIX.sub("", path)
    return path[len(_REPOSITORY) :] if path.startswith(_REPOSITORY) else path


def _module_of(frame: str) -> str:
    match = _FRAME.match(frame)
    path = match["file"] if match else frame
    for package in (
        "receiver/",
        "starlette/",
        "uvicorn/",
        "pydantic",
        "jwt/",
        "sqlite3",
        "orjson",
        "json/",
        "asyncio/",
        "logging/",
        "prometheus_client/",
        "httptools",
        "uvloop",
    ):
        if package in path:
            return package.rstrip("/")
    return "other"


def summarize(raw_path: Path, top: int = 15) -> dict[str, object]:
    """Top frames by self time, by inclusive time in the receiver's own code, and time by package."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            frame
            for frame in stack.split(";")
            if frame and not frame.startswith("process ") and not frame.startswith("thread ")
        ]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        self_time[_short(leaf)] += count
        by_package[_module_of(leaf)] += count
        for frame in set(frames):
            match = _FRAME.match(frame)
            if match and _relative(match["file"]).startswith("receiver/"):
                inclusive[_short(frame)] += count

    def share(counter: Counter[str]) -> list[dict[str, object]]:
        return [
            {"frame": name, "samples": count, "percent": round(100.0 * count / total, 1)}
            for name, count in counter.most_common(top)
        ]

    return {
        "samples": total,
        "top_self": share(self_time),
        "top_inclusive_receiver": share(inclusive),
        "self_by_package": share(by_package),
    }
