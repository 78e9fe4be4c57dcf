"""``secure-export diff --stack NAME [--base REV] [--json | --markdown] [--exit-code]``.

Plans the stack at REV and in the working tree, offline, and prints what would change. Exit status:
0 (1 with ``--exit-code`` when something changes, like ``git diff --exit-code``), 2 when there is
no diff to show (unknown revision, invalid stack on either side, bad usage).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from secure_export.review import render, sides
from secure_export.review.diff import diff_plans


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secure-export diff",
        description="Offline: plan stacks/Pulumi.NAME.yaml as of a git revision and as in the working tree, "
        "and print what `pulumi up` would change, property by property. No cloud, no Pulumi CLI.",
    )
    parser.add_argument("--stack", required=True, help="stack name: stacks/Pulumi.NAME.yaml")
    parser.add_argument("--base", default="HEAD", help="git revision to compare with (default: HEAD)")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print the JSON contract of docs/design.md")
    shape.add_argument("--markdown", action="store_true", help="print a pull-request comment")
    parser.add_argument("--exit-code", action="store_true", help="exit 1 when anything changes")
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=None,
        help="directory holding Pulumi.yaml and stacks/ (default: found from the current directory upward)",
    )
    return parser


def _project_dir(given: Path | None) -> Path:
    if given is not None:
        return given.resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file() and (candidate / "stacks").is_dir():
            return candidate
    return here


def main(argv: list[str]) -> int:
    """Run ``secure-export diff``; return 0, 1 (changes, with --exit-code) or 2 (no diff could be made)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    project_dir = _project_dir(args.project_dir)
    log = sys.stderr
    salt = os.urandom(16)
    stack_file = sides.stack_path(args.stack)
    try:
        base = sides.resolve_base(project_dir, args.base)
        here = (project_dir / stack_file).is_file()
        there = sides.exists_at(base, args.stack)
        if not here and not there:
            known = sorted(
                p.name[len("Pulumi.") : -len(".yaml")] for p in (project_dir / "stacks").glob("Pulumi.*.yaml")
            )
            raise sides.ReviewError(
                [
                    f"unknown stack {args.stack!r}: no {stack_file} in the working tree nor at {args.base}; "
                    f"stacks in the working tree: {', '.join(known) or 'none'}"
                ]
            )
        if there:
            old = sides.plan_base(base, args.stack, salt, log)
        else:
            log.write(f"secure-export diff: {stack_file} does not exist at {args.base}: every resource is a create\n")
            old = None
        if here:
            new = sides.plan_working_tree(base, args.stack, salt, log)
        else:
            log.write(f"secure-export diff: {stack_file} is gone from the working tree: every resource is a delete\n")
            new = None
    except sides.ReviewError as exc:
        for line in exc.lines:
            log.write(f"secure-export diff: {line}\n" if not line.startswith("  ") else line + "\n")
        return 2
    result = diff_plans(old, new, stack=args.stack, base=args.base)
    if args.json:
        sys.stdout.write(render.render_json(result))
    elif args.markdown:
        sys.stdout.write(render.render_markdown(result, base.commit))
    else:
        sys.stdout.write(render.render_text(result, base.commit))
    return 1 if args.exit_code and result.changes else 0
