"""receiver/Dockerfile, checked statically, plus its health probe (test_image.py builds and runs it).

The image must be multi-stage on a slim Python base, install only the receiver's extra (no
Pulumi), run as a numeric non-root user, expose 8080 with a stdlib HEALTHCHECK on /healthz and
start ``secure-export serve --host 0.0.0.0 --port 8080`` with the database on a volume.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO_ROOT

DOCKERFILE = REPO_ROOT / "receiver" / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continuation line"
    return result


def exec_form(args: str) -> list[str]:
    """A JSON exec-form argument list (``["a", "b"]``); shell form is refused on purpose."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), args
    return value


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in parsed:
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def build_args(parsed: list[tuple[str, str]]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for keyword, args in parsed:
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in args:
            name, _, value = args.partition("=")
            defaults[name] = value
    return defaults


def base_image(from_args: str, defaults: dict[str, str]) -> str:
    image = from_args.split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image)


def test_multi_stage_on_a_slim_python_311_base(parsed: list[tuple[str, str]]) -> None:
    all_stages = stages(parsed)
    assert len(all_stages) >= 2, "expected a builder stage and a runtime stage"
    defaults = build_args(parsed)
    runtime_from = all_stages[-1][0][1]
    assert base_image(runtime_from, defaults) == "python:3.11-slim"
    copies_from_builder = [args for keyword, args in all_stages[-1] if keyword == "COPY" and "--from=" in args]
    assert copies_from_builder, "the runtime stage must take the built venv from the builder"


def test_runs_as_a_numeric_non_root_user(parsed: list[tuple[str, str]]) -> None:
    runtime = stages(parsed)[-1]
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "the runtime stage never switches away from root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, f"USER must be a numeric non-root uid, got {users[-1]!r}"
    assert not group or (group.isdigit() and int(group) != 0)
    # Nothing after USER may switch back to root.
    last_user_index = max(i for i, (keyword, _) in enumerate(runtime) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in runtime[last_user_index + 1 :])


def test_entry_point_is_serve_on_all_interfaces_port_8080(parsed: list[tuple[str, str]]) -> None:
    runtime = stages(parsed)[-1]
    entrypoint = [exec_form(args) for keyword, args in runtime if keyword == "ENTRYPOINT"]
    cmd = [exec_form(args) for keyword, args in runtime if keyword == "CMD"]
    command = (entrypoint[-1] if entrypoint else []) + (cmd[-1] if cmd else [])
    assert command == ["secure-export", "serve", "--host", "0.0.0.0", "--port", "8080"]
    assert ("EXPOSE", "8080") in runtime


def test_healthcheck_probes_healthz_with_the_standard_library(parsed: list[tuple[str, str]]) -> None:
    runtime = stages(parsed)[-1]
    [healthcheck] = [args for keyword, args in runtime if keyword == "HEALTHCHECK"]
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = exec_form(command)
    assert argv[0] == "python"
    assert "/healthz" in argv[-1] and ":8080" in argv[-1]
    assert not {"curl", "wget"} & set(" ".join(argv).split())


def test_installs_only_the_receiver_extra_and_copies_only_what_it_needs(
    parsed: list[tuple[str, str]],
) -> None:
    runs = " ".join(args for keyword, args in parsed if keyword == "RUN")
    installs = [token for token in shlex.split(runs) if token.startswith(".[") or token.startswith("secure-export[")]
    assert installs == [".[receiver]"], installs
    assert "pulumi" not in runs.lower()

    copied: set[str] = set()
    for keyword, args in stages(parsed)[0]:
        if keyword == "COPY":
            sources = [token for token in args.split()[:-1] if not token.startswith("--")]
            copied.update(source.rstrip("/") for source in sources)
    assert copied == {"pyproject.toml", "README.md", "secure_export", "receiver"}

    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any("pulumi" in requirement.lower() for requirement in extras["receiver"])


def test_database_lives_on_a_volume_the_user_can_write(parsed: list[tuple[str, str]]) -> None:
    runtime = stages(parsed)[-1]
    env = " ".join(args for keyword, args in runtime if keyword == "ENV")
    match = re.search(r"SECURE_EXPORT_DB=(\S+)", env)
    assert match, "SECURE_EXPORT_DB must point into the data volume"
    db_dir = str(Path(match.group(1)).parent)
    volumes = [item for keyword, args in runtime if keyword == "VOLUME" for item in exec_form(args)]
    assert db_dir in volumes
    uid = next(args for keyword, args in runtime if keyword == "USER").split(":")[0]
    runs = " ".join(args for keyword, args in runtime if keyword == "RUN")
    assert re.search(rf"chown {uid}(:\d+)? {re.escape(db_dir)}\b", runs), "the data directory must belong to the user"


def test_build_context_excludes_local_state() -> None:
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {".git", ".venv", "*.db"} <= ignored


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_probe(parsed: list[tuple[str, str]], port: int) -> int:
    [healthcheck] = [args for keyword, args in stages(parsed)[-1] if keyword == "HEALTHCHECK"]
    argv = exec_form(healthcheck.partition("CMD ")[2])
    argv = [sys.executable, *(arg.replace(":8080", f":{port}") for arg in argv[1:])]
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


def test_healthcheck_command_passes_on_200_and_fails_otherwise(
    parsed: list[tuple[str, str]], health_server: ThreadingHTTPServer
) -> None:
    port = health_server.server_address[1]
    handler: Any = health_server.RequestHandlerClass
    assert run_probe(parsed, port) == 0

    class Unhealthy(handler):
        status = 503

    health_server.RequestHandlerClass = Unhealthy
    assert run_probe(parsed, port) != 0

    health_server.shutdown()
    health_server.server_close()
    assert run_probe(parsed, port) != 0
