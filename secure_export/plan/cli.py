"""``secure-export plan --stack NAME [--json] [--policy]``: print every resource ``pulumi up`` would declare.

A tree by default, the JSON contract of docs/design.md with ``--json`` (docs/infrastructure.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from secure_export.plan.render import render_tree, to_json
from secure_export.plan.run import find_project_dir, plan_stack
from secure_export.stack.config import ConfigError
from secure_export.stack.loading import stack_file


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
