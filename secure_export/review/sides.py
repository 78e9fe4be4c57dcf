"""The two sides of ``secure-export diff``: the stack as of a git revision, and as in the working tree.

The base side checks the revision out into a temporary worktree (``git worktree add --detach``),
plans it there with that revision's own code in a child interpreter (this one's, so the same
installed SDKs), and removes the worktree. The working tree is planned the same way, with its own code. Progress
and which side failed go to stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from secure_export.review import plan_side


class ReviewError(Exception):
    """Something a reviewer must fix before there is a diff; ``lines`` say what and where."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Base:
    """The revision the working tree is compared with."""

    rev: str
    commit: str
    repo_root: Path
    project_rel: Path


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


def resolve_base(project_dir: Path, rev: str) -> Base:
    """Find the repository around ``project_dir`` and the commit ``rev`` names; raise ReviewError otherwise."""
    top = _git(project_dir, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ReviewError(
            [f"{project_dir} is not inside a git repository; diff compares the working tree with a git revision"]
        )
    repo_root = Path(top.stdout.strip()).resolve()
    found = _git(repo_root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode != 0 or not found.stdout.strip():
        raise ReviewError(
            [
                f"unknown revision {rev!r}: git has no commit by that name in {repo_root}",
                "give a branch, tag or commit (e.g. --base origin/main); in CI fetch the history "
                "(actions/checkout with fetch-depth: 0)",
            ]
        )
    return Base(rev, found.stdout.strip(), repo_root, project_dir.resolve().relative_to(repo_root))


def stack_path(stack: str) -> Path:
    """Return a stack file's path relative to the project directory."""
    return Path("stacks") / f"Pulumi.{stack}.yaml"


def exists_at(base: Base, stack: str) -> bool:
    """Say whether the stack file exists at the base revision."""
    spec = f"{base.commit}:{(base.project_rel / stack_path(stack)).as_posix()}"
    return _git(base.repo_root, "cat-file", "-e", spec).returncode == 0


def _failure(answer: dict[str, Any], where: str, stack: str) -> ReviewError:
    if answer.get("kind") == "config":
        head = f"{where}: {stack_path(stack)} is invalid:"
    else:
        head = f"{where}: the Pulumi program failed for stack {stack!r}:"
    return ReviewError([head, *(f"  {line}" for line in answer.get("problems") or [])])


def _plan_in_child(project_dir: Path, stack: str, salt: bytes, where: str) -> dict[str, Any]:
    """Plan in a child interpreter whose import path starts at ``project_dir``: that tree's own code."""
    env = {**os.environ, "PYTHONPATH": str(project_dir), plan_side.SALT_VARIABLE: salt.hex()}
    env.pop("PYTHONSAFEPATH", None)
    script = str(Path(plan_side.__file__).resolve())
    command = [sys.executable, script, "--stack", stack, "--project-dir", str(project_dir)]
    child = subprocess.run(command, cwd=project_dir, env=env, capture_output=True, text=True, check=False)
    try:
        answer = json.loads(child.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        last = (child.stderr.strip().splitlines() or ["no output"])[-1]
        raise ReviewError(
            [f"{where}: could not plan it (is there a secure_export/plan/ or components/plan.py?): {last}"]
        ) from None
    if not answer.get("ok"):
        raise _failure(answer, where, stack)
    plan: dict[str, Any] = answer["plan"]
    return plan


def plan_base(base: Base, stack: str, salt: bytes, log: TextIO) -> dict[str, Any]:
    """Plan ``stack`` as of the base revision, with that revision's code; raise ReviewError naming the side."""
    where = f"base {base.rev} ({base.commit[:12]})"
    log.write(f"secure-export diff: planning stack {stack!r} at {where} in a temporary worktree\n")
    scratch = Path(tempfile.mkdtemp(prefix="secure-export-diff-"))
    tree = scratch / "base"
    added = _git(base.repo_root, "worktree", "add", "--detach", "--quiet", str(tree), base.commit)
    if added.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ReviewError([f"{where}: git could not check the revision out: {added.stderr.strip()}"])
    try:
        return _plan_in_child(tree / base.project_rel, stack, salt, where)
    finally:
        _git(base.repo_root, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(scratch, ignore_errors=True)
        _git(base.repo_root, "worktree", "prune")


def plan_working_tree(base: Base, stack: str, salt: bytes, log: TextIO) -> dict[str, Any]:
    """Plan ``stack`` as in the working tree, with the working tree's code; raise ReviewError naming the side."""
    log.write(f"secure-export diff: planning stack {stack!r} in the working tree\n")
    return _plan_in_child(base.repo_root / base.project_rel, stack, salt, "working tree")
