"""``secure-export diff`` against real git repositories made in tmp dirs: each side planned with its own code."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secure_export.review.cli import main
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT
SECURE_EXPORT = Path(sys.executable).parent / "secure-export"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def copy_program(repo: Path) -> None:
    """Copy this project's Pulumi program into ``repo``: its code (secure_export/ and the components/ its
    ``secure_export/components`` link points to), ``__main__.py`` and ``Pulumi.yaml``."""
    for package in ("secure_export", "components"):
        shutil.copytree(REPO / package, repo / package, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("__main__.py", "Pulumi.yaml"):
        shutil.copy(REPO / name, repo / name)


def make_project(repo: Path) -> None:
    """Copy this project's Pulumi program and its dev stack into ``repo``."""
    repo.mkdir(parents=True)
    copy_program(repo)
    (repo / "stacks").mkdir()
    shutil.copy(REPO / "stacks" / "Pulumi.dev.yaml", repo / "stacks" / "Pulumi.dev.yaml")


def init(repo: Path) -> None:
    """Make ``repo`` a git repository with everything in it committed."""
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.email", "reviewer@example.com")
    git(repo, "config", "user.name", "Reviewer")
    commit(repo, "dev stack")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repository holding this project's Pulumi program and the dev stack, committed once."""
    repo = tmp_path / "repo"
    make_project(repo)
    init(repo)
    return repo


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", message)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def run(capsys, repo: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--stack", "dev", "--project-dir", str(repo), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_threshold_change_in_the_working_tree_is_an_update_at_its_path(project, capsys):
    edit(project / "stacks" / "Pulumi.dev.yaml", "threshold: 90", "threshold: 95")
    code, out, err = run(capsys, project, "--json", "--exit-code")
    assert code == 1
    document = json.loads(out)
    assert document["stack"] == "dev" and document["base"] == "HEAD"
    (change,) = document["changes"]
    assert change["op"] == "update" and change["type"] == "azure-native:monitor:MetricAlert"
    assert change["properties"] == [{"path": "criteria.allOf[0].threshold", "old": 90, "new": 95}]
    assert "planning stack 'dev' at base HEAD" in err and "in the working tree" in err
    # The temporary worktree is gone.
    assert git(project, "worktree", "list").count("\n") == 0


def test_no_change_exits_zero_even_with_exit_code(project, capsys):
    code, out, _ = run(capsys, project, "--exit-code")
    assert code == 0
    assert "0 changes." in out


def test_the_base_side_is_planned_with_that_revisions_own_code(project, capsys):
    # The base commit's component declares the action group disabled; the working tree's enables it.
    group = project / "components" / "action_group.py"
    edit(group, "enabled=True,", "enabled=False,")
    commit(project, "old code")
    edit(group, "enabled=False,", "enabled=True,")
    code, out, _ = run(capsys, project, "--json")
    assert code == 0
    (change,) = json.loads(out)["changes"]
    assert change["properties"] == [{"path": "enabled", "old": False, "new": True}]


def test_dependson_and_other_extra_fields_of_an_older_plan_are_not_properties(project, capsys):
    # An older or newer plan JSON may carry fields the other lacks ("offline", "dependsOn").
    plan_py = project / "secure_export" / "plan" / "render.py"
    plan_py.write_text(
        plan_py.read_text(encoding="utf-8")
        + "\n\n_to_json = to_json\n\n\ndef to_json(result):\n    document = _to_json(result)\n"
        '    document["offline"] = True\n    for r in document["resources"]:\n'
        '        r["dependsOn"] = [r["name"] + "-elsewhere"]\n    return document\n',
        encoding="utf-8",
    )
    commit(project, "plan with extra fields")
    git(project, "checkout", "--quiet", "HEAD~1", "--", "secure_export/plan/run.py")
    code, out, _ = run(capsys, project, "--json", "--exit-code")
    assert (code, json.loads(out)["changes"]) == (0, [])


def test_a_base_in_the_layout_before_secure_export_plan_is_planned_with_its_components_plan(tmp_path, capsys):
    # Revisions before issue #11 keep plan_stack, to_json and (imported) ConfigError in components/plan.py.
    # This base's plan marks the action group disabled, so the diff proves its code ran.
    repo = tmp_path / "repo"
    (repo / "components").mkdir(parents=True)
    (repo / "components" / "__init__.py").write_text("")
    (repo / "components" / "plan.py").write_text(
        "from secure_export.plan.render import to_json as _to_json\n"
        "from secure_export.plan.run import plan_stack\n"
        "from secure_export.stack.config import ConfigError\n\n\n"
        "def to_json(result):\n"
        "    document = _to_json(result)\n"
        "    for r in document['resources']:\n"
        "        if r['type'] == 'azure-native:monitor:ActionGroup':\n"
        "            r['inputs']['enabled'] = False\n"
        "    return document\n",
        encoding="utf-8",
    )
    for name in ("__main__.py", "Pulumi.yaml"):
        shutil.copy(REPO / name, repo / name)
    (repo / "stacks").mkdir()
    shutil.copy(REPO / "stacks" / "Pulumi.dev.yaml", repo / "stacks" / "Pulumi.dev.yaml")
    init(repo)
    shutil.rmtree(repo / "components")
    copy_program(repo)
    code, out, _ = run(capsys, repo, "--json")
    assert code == 0
    (change,) = json.loads(out)["changes"]
    assert change["properties"] == [{"path": "enabled", "old": False, "new": True}]


def test_a_stack_file_missing_at_the_base_makes_everything_a_create(project, capsys):
    shutil.copy(project / "stacks" / "Pulumi.dev.yaml", project / "stacks" / "Pulumi.qa.yaml")
    code = main(["--stack", "qa", "--project-dir", str(project), "--json", "--exit-code"])
    out, err = capsys.readouterr()
    assert code == 1
    changes = json.loads(out)["changes"]
    assert changes and {c["op"] for c in changes} == {"create"}
    assert "stacks/Pulumi.qa.yaml does not exist at HEAD: every resource is a create" in err


def test_a_base_given_by_branch_name_and_markdown(project, capsys):
    git(project, "branch", "base")
    edit(project / "stacks" / "Pulumi.dev.yaml", "severity: 3", "severity: 2")
    code, out, _ = run(capsys, project, "--base", "base", "--markdown")
    assert code == 0
    assert out.startswith("<!-- secure-export-diff stack=dev -->\n")
    assert "**1 to update; " in out and "<code>secure-export-rules-metric-dev-vm-cpu-high</code>" in out
    assert "| `severity` | `3` | `2` |" in out


def test_an_unknown_revision_is_a_clear_error(project, capsys):
    code, out, err = run(capsys, project, "--base", "no-such-branch")
    assert code == 2 and out == ""
    assert "unknown revision 'no-such-branch'" in err and "--base origin/main" in err


def test_an_invalid_working_tree_stack_names_the_side_and_the_key(project, capsys):
    edit(project / "stacks" / "Pulumi.dev.yaml", "severity: 3", "severity: 9")
    code, out, err = run(capsys, project)
    assert code == 2 and out == ""
    assert "working tree: stacks/Pulumi.dev.yaml is invalid:" in err
    assert "secure-export:alertRules.metric[0].severity" in err


def test_an_invalid_base_stack_names_the_side_and_the_key(project, capsys):
    stack = project / "stacks" / "Pulumi.dev.yaml"
    edit(stack, "shortName: sx-dev", "shortName: this-short-name-is-too-long")
    commit(project, "broken")
    edit(stack, "shortName: this-short-name-is-too-long", "shortName: sx-dev")
    code, _, err = run(capsys, project)
    assert code == 2
    assert "base HEAD (" in err and "stacks/Pulumi.dev.yaml is invalid:" in err
    assert "secure-export:actionGroup.shortName" in err


def test_an_unknown_stack_lists_the_stacks_there_are(project, capsys):
    code = main(["--stack", "nope", "--project-dir", str(project)])
    _, err = capsys.readouterr()
    assert code == 2 and "unknown stack 'nope'" in err and "stacks in the working tree: dev" in err


def test_a_project_in_a_subdirectory_of_the_repository(tmp_path, capsys):
    infra = tmp_path / "repo" / "infra"
    make_project(infra)
    # Each side's own components are the ones in infra/, not the installed package.
    edit(infra / "components" / "action_group.py", "enabled=True,", "enabled=False,")
    init(tmp_path / "repo")
    edit(infra / "components" / "action_group.py", "enabled=False,", "enabled=True,")
    edit(infra / "stacks" / "Pulumi.dev.yaml", "threshold: 90", "threshold: 70")
    code, out, _ = run(capsys, infra, "--json")
    assert code == 0
    changes = {c["type"]: c["properties"] for c in json.loads(out)["changes"]}
    assert changes == {
        "azure-native:monitor:ActionGroup": [{"path": "enabled", "old": False, "new": True}],
        "azure-native:monitor:MetricAlert": [{"path": "criteria.allOf[0].threshold", "old": 90, "new": 70}],
    }


def test_outside_a_git_repository_is_a_clear_error(tmp_path, capsys):
    code = main(["--stack", "dev", "--project-dir", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2 and "not inside a git repository" in err


def test_the_console_script_dispatches_diff(project):
    edit(project / "stacks" / "Pulumi.dev.yaml", "threshold: 90", "threshold: 91")
    done = subprocess.run(
        [str(SECURE_EXPORT), "diff", "--stack", "dev", "--exit-code"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "~ criteria.allOf[0].threshold: 90 => 91" in done.stdout
