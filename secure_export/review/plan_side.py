"""One side of ``secure-export diff``: a stack's offline plan as JSON, secrets as comparable fingerprints.

Run by path in a temporary worktree of a revision, with that revision's code first on the import path,
it imports only what every revision's plan has (:func:`planner`) and prints one JSON object
(docs/review.md, "`secure-export diff`").
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SALT_VARIABLE = "SECURE_EXPORT_DIFF_SALT"
_MASK = "[secret]"
MADE_UP_SECRET = "[secret:0]"
"""The token of every secret the offline engine made up: equal on both sides, never a change."""


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _fingerprint(raw: Any, salt: bytes, configured: frozenset[str]) -> str:
    if not any(secret in text for text in _strings(raw) for secret in configured):
        return MADE_UP_SECRET
    plain = json.dumps(raw, sort_keys=True, default=str)
    return "[secret:" + hmac.new(salt, plain.encode(), hashlib.sha256).hexdigest()[:24] + "]"


def fingerprinted(shown: Any, raw: Any, salt: bytes, configured: frozenset[str]) -> Any:
    """Return ``shown`` (masked inputs) with each ``[secret]`` replaced by a token for the value under it in ``raw``.

    ``configured`` holds the stack file's secret values (as the offline plan sees them); a masked
    value that holds none of them was made up by the engine and gets :data:`MADE_UP_SECRET`.
    """
    if shown == _MASK:
        return _fingerprint(raw, salt, configured)
    if isinstance(shown, dict):
        raw_map = raw if isinstance(raw, dict) else {}
        return {k: fingerprinted(v, raw_map.get(k), salt, configured) for k, v in shown.items()}
    if isinstance(shown, list):
        raw_list = raw if isinstance(raw, list) else []
        return [
            fingerprinted(v, raw_list[i] if i < len(raw_list) else None, salt, configured) for i, v in enumerate(shown)
        ]
    return shown


def configured_secrets(stack_file: Path) -> frozenset[str]:
    """Return the ``secure:`` values of a stack file: what the offline plan uses for its secrets."""
    import yaml

    try:
        document = yaml.safe_load(stack_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return frozenset()
    entries = document.get("config") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        return frozenset()
    return frozenset(
        str(v["secure"]) for v in entries.values() if isinstance(v, dict) and set(v) == {"secure"} and v["secure"]
    )


def planner(project_dir: Path) -> tuple[Callable[[Path, str], Any], Callable[[Any], dict[str, Any]], type[Exception]]:
    """Return the revision's own ``plan_stack``, ``to_json`` and ``ConfigError``, by the layout it has.

    Since issue #11 they live in ``secure_export/plan/`` and ``secure_export/stack/``; before, in
    ``components/plan.py``. The revision's tree leads the import path.
    """
    if (project_dir / "secure_export" / "plan").is_dir():
        render = importlib.import_module("secure_export.plan.render")
        run = importlib.import_module("secure_export.plan.run")
        config = importlib.import_module("secure_export.stack.config")
        return run.plan_stack, render.to_json, config.ConfigError
    plan = importlib.import_module("components.plan")
    # Whichever module held the config model then, components/plan.py imported ConfigError from it.
    return plan.plan_stack, plan.to_json, plan.ConfigError


def plan_document(project_dir: Path, stack: str, salt: bytes) -> dict[str, Any]:
    """Plan ``stack`` with the revision's own code; raise its ConfigError on bad config."""
    plan_stack, to_json, _ = planner(project_dir)
    result = plan_stack(project_dir, stack)
    document: dict[str, Any] = to_json(result)
    configured = configured_secrets(project_dir / "stacks" / f"Pulumi.{stack}.yaml")
    for resource, record in zip(document["resources"], result.resources, strict=False):
        if (resource["type"], resource["name"]) == (record.type, record.name):
            resource["inputs"] = fingerprinted(resource["inputs"], record.inputs, salt, configured)
    return document


def salt_from_environment() -> bytes:
    """Return the salt the caller set, or a fresh one."""
    value = os.environ.get(SALT_VARIABLE)
    return bytes.fromhex(value) if value else os.urandom(16)


def run(project_dir: Path, stack: str, salt: bytes) -> dict[str, Any]:
    """Return the side's answer: the plan, or why there is none."""
    config_error = planner(project_dir)[2]

    try:
        return {"ok": True, "plan": plan_document(project_dir, stack, salt)}
    except config_error as exc:
        # Every revision's ConfigError carries ``problems``, one line each.
        return {"ok": False, "kind": "config", "problems": list(getattr(exc, "problems", None) or [str(exc)])}
    except Exception as exc:  # noqa: BLE001 - the caller reports which side failed, in one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"ok": False, "kind": "program", "problems": [message]}


def main(argv: list[str] | None = None) -> int:
    """Print one side's answer as JSON on stdout."""
    parser = argparse.ArgumentParser(prog="plan_side")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--project-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    answer = run(args.project_dir.resolve(), args.stack, salt_from_environment())
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    # Skip interpreter teardown: the SDK's executor threads and loops have nothing left to say.
    os._exit(0)


if __name__ == "__main__":
    # Run by path, this file's folder leads the import path; the revision's own code must come first.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    main()
