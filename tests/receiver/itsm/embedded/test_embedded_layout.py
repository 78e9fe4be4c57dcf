"""The embedded backend and the SQLite writer: no import cycle through them, no private name imported across modules."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import REPO_ROOT

OURS = (
    "receiver.itsm.embedded",
    "receiver.storage.readers",
    "receiver.storage.sqlite.connection",
    "receiver.storage.sqlite.writer",
)


def _modules() -> dict[str, Path]:
    modules = {}
    for path in (REPO_ROOT / "receiver").rglob("*.py"):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import in ``path`` (lazy ones too) of a receiver module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [alias.name for alias in node.names]
            found.append((node.module, names))
            found += [(f"{node.module}.{name}", []) for name in names if f"{node.module}.{name}" in modules]
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return [(module, names) for module, names in found if module in modules]


def test_no_private_name_is_imported_from_another_module() -> None:
    modules = _modules()
    offences = [
        f"{name} imports {', '.join(private)} from {module}"
        for name, path in modules.items()
        if name.startswith(OURS)
        for module, names in _imports(path, modules)
        if module != name and (private := [n for n in names if n.startswith("_")])
    ]
    assert offences == []


def test_no_import_cycle_runs_through_the_embedded_backend_or_the_sqlite_writer() -> None:
    modules = _modules()
    graph = {name: {m for m, _ in _imports(path, modules) if m != name} for name, path in modules.items()}

    def reaches(start: str, goal: str) -> list[str] | None:
        stack, seen = [[start]], {start}
        while stack:
            trail = stack.pop()
            for nxt in graph[trail[-1]]:
                if nxt == goal:
                    return [*trail, nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append([*trail, nxt])
        return None

    cycles = [cycle for name in graph if name.startswith(OURS) and (cycle := reaches(name, name))]
    assert cycles == []
