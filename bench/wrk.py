"""Flat-out load with ``wrk`` (C, one thread) when it is available, so the baseline's figure is the
server's and not the client's; installed with apt-get when missing and possible.

The Lua script sends the same requests as :mod:`bench.loadgen`: the same body templates, distinct
alert ids, tokens round-robin.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.payloads import templates

_MARK = "WRK_JSON "

_SCRIPT = r"""
local heads = {%(heads)s}
local middles = {%(middles)s}
local tails = {%(tails)s}
local tokens = {%(tokens)s}
local seed = %(seed)d
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  accepted = 0
  other = 0
end

function request()
  counter = counter + 1
  local k = (counter %% #heads) + 1
  local instance = string.format("%%08x-%%04x-4000-8000-%%012x", seed, tid, counter)
  local body = heads[k] .. instance .. middles[k] .. "Fired" .. tails[k]
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. tokens[(counter %% #tokens) + 1]
  return wrk.format("POST", "%(path)s", headers, body)
end

function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local acc, oth = 0, 0
  for _, t in ipairs(threads) do
    acc = acc + t:get("accepted")
    oth = oth + t:get("other")
  end
  io.write(string.format(
    '%(mark)s{"accepted": %%d, "other": %%d, "requests": %%d, "duration_us": %%d, ' ..
    '"errors": {"connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, "status": %%d}, ' ..
    '"latency_us": {"p50": %%d, "p95": %%d, "p99": %%d, "max": %%d}}\n',
    acc, oth, summary.requests, summary.duration,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout, summary.errors.status,
    latency:percentile(50.0), latency:percentile(95.0), latency:percentile(99.0), latency.max))
end
"""


def _lua_strings(values: list[bytes]) -> str:
    parts = []
    for value in values:
        text = value.decode()
        if "]==]" in text:  # pragma: no cover — the templates are JSON of our own making
            raise ValueError("a body template contains the Lua long-string terminator")
        parts.append(f"[==[{text}]==]")
    return ", ".join(parts)


def script(tokens: list[str], seed: int, path: str = "/api/alerts") -> str:
    """The Lua script for ``wrk -s``: distinct alert ids for ``seed``, ``tokens`` round-robin."""
    bodies = templates()
    return _SCRIPT % {
        "heads": _lua_strings([t.head for t in bodies]),
        "middles": _lua_strings([t.middle for t in bodies]),
        "tails": _lua_strings([t.tail for t in bodies]),
        "tokens": _lua_strings([token.encode() for token in tokens]),
        "seed": seed,
        "path": path,
        "mark": _MARK,
    }


def ensure_wrk(progress: Callable[[str], None]) -> str | None:
    """The ``wrk`` executable; installs Debian's package when missing and possible; ``None`` otherwise."""
    found = shutil.which("wrk")
    if found or os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    progress("installing wrk from Debian's packages (apt-get install -y wrk)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (
        ["apt-get", "install", "-y", "-q", "wrk"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "wrk"],
    ):
        try:
            completed = subprocess.run(command, env=env, capture_output=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if command[1] == "install" and completed.returncode == 0:
            return shutil.which("wrk")
    return shutil.which("wrk")


def run_wrk(
    executable: str, port: int, tokens: list[str], seed: int, seconds: float, connections: int, workdir: Path
) -> dict[str, Any]:
    """Run ``wrk`` (one thread) against ``127.0.0.1:port`` for ``seconds``; its figures as a dict."""
    script_path = workdir / f"wrk-{seed}.lua"
    script_path.write_text(script(tokens, seed))
    argv = [
        executable, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(script_path), f"http://127.0.0.1:{port}/api/alerts",
    ]  # fmt: skip
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in completed.stdout.splitlines():
        if line.startswith(_MARK):
            result: dict[str, Any] = json.loads(line[len(_MARK) :])
            result["elapsed_s"] = result["duration_us"] / 1e6
            return result
    raise RuntimeError(
        f"wrk gave no result ({completed.returncode}): {completed.stdout[-1500:]} {completed.stderr[-1500:]}"
    )
