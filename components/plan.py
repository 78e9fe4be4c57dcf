"""``secure-export plan --stack NAME [--json]``: the Pulumi program, evaluated offline.

It validates ``stacks/Pulumi.NAME.yaml``, runs the repository's ``__main__.py`` under Pulumi's
mocks (no cloud, no CLI) with that stack's config, and prints every resource ``pulumi up`` would
declare: a tree by default, or the JSON contract of docs/design.md with ``--json``. Secret values
print as ``[secret]``.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

import yaml

from secure_export.stack.config import ConfigError, load_stack_file, stack_file
from secure_export.components.offline import (
    SECRET_MASK,
    PlanResult,
    masked,
    no_full_collections,
    plain_numbers,
    public_inputs,
    run_program,
)
from secure_export.components.tool_side import tool_side_lines


def find_project_dir(start: Path | None = None) -> Path:
    """Return the directory holding Pulumi.yaml and stacks/: from ``start`` (cwd) upward, else this checkout."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file() and (candidate / "stacks").is_dir():
            return candidate
    return Path(__file__).resolve().parent.parent


def project_name(project_dir: Path) -> str:
    """Return the Pulumi project name from Pulumi.yaml (default secure-export)."""
    try:
        document = yaml.safe_load((project_dir / "Pulumi.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return "secure-export"
    return str(document.get("name") or "secure-export")


def plan_stack(project_dir: Path, stack: str) -> PlanResult:
    """Validate ``stacks/Pulumi.<stack>.yaml`` and run the program offline; raise ConfigError on bad config."""
    return plan_file(stack_file(project_dir, stack), stack=stack, project_dir=project_dir)


def plan_file(path: Path, *, stack: str | None = None, project_dir: Path | None = None) -> PlanResult:
    """Validate any stack file and run the program (``project_dir``/__main__.py) offline with it.

    ``stack`` defaults to the NAME of ``Pulumi.NAME.yaml``; ``project_dir`` to this checkout.
    Raises ConfigError on bad config.
    """
    project_dir = project_dir or Path(__file__).resolve().parent.parent
    stack = stack or path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    try:
        display = str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        display = str(path)
    with no_full_collections():
        loaded = load_stack_file(path, display=display)
    main_py = project_dir / "__main__.py"

    def program() -> None:
        runpy.run_path(str(main_py), run_name="__main__")

    result = run_program(
        program,
        stack=stack,
        project=project_name(project_dir),
        config=loaded.pulumi_config,
        secret_keys=loaded.secret_keys,
        secret_values=loaded.config.secret_values() + [loaded.pulumi_config[k] for k in loaded.secret_keys],
    )
    result.warnings = list(loaded.warnings)
    return result


def to_json(result: PlanResult) -> dict[str, Any]:
    """Return the plan as the JSON contract of docs/design.md.

    ``{"stack", "offline": true, "resources": [{type, name, parent, inputs, outputs, dependsOn}], "outputs"}``.
    """
    secrets = result.secret_values
    resources = []
    for record in result.resources:
        made_up, _ = masked(record.outputs, secrets)
        resources.append(
            {
                "type": record.type,
                "name": record.name,
                "parent": record.parent,
                "inputs": public_inputs(record, secrets),
                "outputs": plain_numbers(made_up),
                "dependsOn": list(record.depends_on),
            }
        )
    outputs: dict[str, Any] = {}
    for key, value in result.outputs.items():
        outputs[key] = SECRET_MASK if key in result.secret_outputs else plain_numbers(masked(value, secrets)[0])
    return {"stack": result.stack, "offline": True, "resources": resources, "outputs": outputs}


def render_tree(plan: dict[str, Any]) -> str:
    """Return the plan as a readable tree of resources and the stack outputs."""
    resources = plan["resources"]
    children: dict[str | None, list[dict[str, Any]]] = {}
    names = {r["name"] for r in resources}
    for r in resources:
        parent = r["parent"] if r["parent"] in names else None
        children.setdefault(parent, []).append(r)
    components = sum(1 for r in resources if r["type"].startswith("secure-export:index:"))
    lines = [
        f"stack {plan['stack']}: {len(resources) - components} resources in {components} components "
        "(offline: Pulumi mocks, made-up ids)",
        "",
    ]

    def walk(parent: str | None, prefix: str) -> None:
        kids = children.get(parent, [])
        for index, r in enumerate(kids):
            last = index == len(kids) - 1
            branch = "" if parent is None else ("└─ " if last else "├─ ")
            ident = r["outputs"].get("id")
            suffix = f"  id={ident}" if ident else ""
            lines.append(f"{prefix}{branch}{r['name']}  ({r['type']}){suffix}")
            inner = prefix + ("" if parent is None else ("   " if last else "│  "))
            if r.get("dependsOn"):
                below = "│  " if children.get(r["name"]) else "   "
                lines.append(f"{inner}{below}waits for: {', '.join(r['dependsOn'])}")
            walk(r["name"], inner)

    walk(None, "")
    lines.append("")
    lines.append("outputs:")
    for key, value in plan["outputs"].items():
        lines.append(f"  {key}: {json.dumps(value) if not isinstance(value, str) else value}")
    side = tool_side_lines(plan["outputs"])
    if side:
        lines += ["", *side]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secure-export plan",
        description="Evaluate the Pulumi program for stacks/Pulumi.NAME.yaml offline (Pulumi mocks, no cloud, "
        "no CLI) and print every resource `pulumi up` would declare.",
    )
    parser.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.NAME.yaml")
    parser.add_argument("--json", action="store_true", help="print the JSON contract instead of a tree")
    parser.add_argument(
        "--policy",
        action="store_true",
        help="also run the project's policy pack (policy/) over the plan; exit 1 on a mandatory violation",
    )
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=None,
        help="directory holding Pulumi.yaml and stacks/ (default: found from the current directory upward)",
    )
    return parser


def main(argv: list[str]) -> int:
    """Run ``secure-export plan``; return 0, 1 on invalid config, 2 on bad usage."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    project_dir = args.project_dir.resolve() if args.project_dir else find_project_dir()
    if not (project_dir / "__main__.py").is_file():
        sys.stderr.write(f"secure-export plan: no Pulumi program (__main__.py) in {project_dir}; use --project-dir\n")
        return 2
    try:
        stack_file(project_dir, args.stack)
    except ConfigError as exc:
        sys.stderr.write(f"secure-export plan: {exc.problems[0]}\n")
        return 1
    try:
        result = plan_stack(project_dir, args.stack)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(problem + "\n")
        sys.stderr.write(f"secure-export plan: stack {args.stack!r} is invalid ({len(exc.problems)} problem(s))\n")
        return 1
    except Exception as exc:  # noqa: BLE001 - a user-facing command prints one line, not a traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.stderr.write(f"secure-export plan: the program failed for stack {args.stack!r}: {message}\n")
        if os.environ.get("SECURE_EXPORT_DEBUG"):
            raise
        return 1
    for warning in result.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    plan = to_json(result)
    if args.json:
        sys.stdout.write(json.dumps(plan, indent=2, sort_keys=False) + "\n")
    else:
        sys.stdout.write(render_tree(plan))
    if args.policy:
        from secure_export.review.policy_check import check

        # With --json, stdout stays one JSON document; the policy report goes to stderr.
        return check(plan, [r.options for r in result.resources], sys.stderr if args.json else sys.stdout)
    return 0
