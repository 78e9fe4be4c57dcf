"""The pull-request review CI runs (.github/review.sh and the workflow that calls it), on real git repositories."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.secure_export.review.test_diff_git import commit, copy_program, edit, git
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT
SCRIPT = REPO / ".github" / "review.sh"
WORKFLOW = REPO / ".github" / "workflows" / "stack-review.yml"

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or shutil.which("bash") is None, reason="needs git and bash"
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with the program and two stacks on main, and a branch 'change' checked out."""
    root = tmp_path / "repo"
    root.mkdir()
    copy_program(root)
    (root / "stacks").mkdir()
    shutil.copy(REPO / "stacks" / "Pulumi.dev.yaml", root / "stacks" / "Pulumi.dev.yaml")
    shutil.copy(REPO / "stacks" / "Pulumi.dev.yaml", root / "stacks" / "Pulumi.qa.yaml")
    (root / "README.md").write_text("project\n", encoding="utf-8")
    git(root, "init", "--quiet", "--initial-branch=main")
    git(root, "config", "user.email", "reviewer@example.com")
    git(root, "config", "user.name", "Reviewer")
    commit(root, "two stacks")
    git(root, "checkout", "--quiet", "-b", "change")
    return root


def review(repo: Path) -> tuple[int, str, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(SCRIPT), "main", str(repo / "review.md")], cwd=repo, env=env, capture_output=True, text=True
    )
    return done.returncode, (repo / "review.md").read_text(encoding="utf-8"), done.stderr


def test_a_changed_stack_gets_its_diff_and_its_policies(repo):
    edit(repo / "stacks" / "Pulumi.qa.yaml", "threshold: 90", "threshold: 80")
    commit(repo, "qa threshold")
    code, comment, _ = review(repo)
    assert code == 0
    assert comment.startswith("<!-- secure-export-review -->\n## Stack review")
    assert "<!-- secure-export-diff stack=qa -->" in comment and "stack=dev" not in comment
    assert "| `criteria.allOf[0].threshold` | `90` | `80` |" in comment
    assert "**Policies for `qa`: pass.**" in comment and "no violations" in comment


def test_a_change_to_the_program_reviews_every_stack(repo):
    edit(repo / "components" / "action_group.py", "enabled=True,", "enabled=False,")
    commit(repo, "disable the group")
    code, comment, _ = review(repo)
    assert code == 0
    for stack in ("dev", "qa"):
        assert f"<!-- secure-export-diff stack={stack} -->" in comment
        assert f"**Policies for `{stack}`: pass.**" in comment
    assert comment.count("| `enabled` | `true` | `false` |") == 2


def test_an_invalid_stack_fails_the_review_and_says_why(repo):
    edit(repo / "stacks" / "Pulumi.dev.yaml", "severity: 3", "severity: 9")
    commit(repo, "bad severity")
    code, comment, _ = review(repo)
    assert code == 1
    assert "### stack `dev`: no diff" in comment
    assert "secure-export:alertRules.metric[0].severity" in comment


def test_a_change_outside_the_program_touches_no_stack(repo):
    (repo / "README.md").write_text("more\n", encoding="utf-8")
    commit(repo, "docs")
    code, comment, _ = review(repo)
    assert code == 0 and "touches no stack" in comment


def test_a_review_too_long_for_a_comment_keeps_its_summaries_and_drops_the_sections(repo):
    edit(repo / "components" / "action_group.py", "enabled=True,", "enabled=False,")
    commit(repo, "disable the group")
    _, comment, _ = review(repo)

    def fit(limit: int) -> str:
        return subprocess.run(
            ["bash", str(SCRIPT), "--fit", str(repo / "review.md"), str(limit)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert fit(len(comment) + 10) == comment
    short = fit(500)
    assert "<details>" not in short and "job summary has all of it" in short
    assert short.count("<!-- secure-export-diff stack=") == 2 and "**Policies for `dev`: pass.**" in short
    assert "**1 to update; " in short


def test_the_workflow_runs_the_review_posts_it_and_previews_with_credentials():
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = document.get("on", document.get(True))
    assert "pull_request" in triggers
    offline, preview = document["jobs"]["offline"], document["jobs"]["preview"]
    runs = "\n".join(step.get("run", "") for step in offline["steps"])
    assert '.github/review.sh "$BASE" review.md' in runs
    assert "gh pr comment" in runs and "<!-- secure-export-review -->" in runs
    assert ".github/review.sh --fit review.md > comment.md" in runs
    assert any(step.get("with", {}).get("fetch-depth") == 0 for step in offline["steps"])
    # The cloud job runs only where credentials are configured, and uses this repository's pack.
    assert "AZURE_CLIENT_ID" in preview["if"] and preview["needs"] == "offline"
    preview_runs = "\n".join(step.get("run", "") for step in preview["steps"])
    assert 'pulumi preview --stack "$stack" --diff --policy-pack policy' in preview_runs
    assert (REPO / "policy" / "PulumiPolicy.yaml").is_file()
    # Every extra the workflow installs is one pyproject.toml defines.
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    extras = re.findall(r"pip install -e '\.\[([a-z,]+)\]'", runs + preview_runs)
    assert extras and all(f"\n{e} = [" in pyproject for group in extras for e in group.split(","))
