"""What the distribution installs: the components as secure_export.components, and no top-level ``components``.

Each test copies the build inputs into a tmp dir and runs setuptools' ``build_py`` there, which lays out
the files exactly as a wheel (and a non-editable ``pip install``) holds them.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT

_BUILD = """
import json, os, warnings
warnings.simplefilter("ignore")
from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution
dist = Distribution()
apply_configuration(dist, "pyproject.toml")
dist.script_name = "setup.py"
dist.get_command_obj("build_py").build_lib = "lib"
dist.run_command("build_py")
print(json.dumps(sorted(os.path.relpath(os.path.join(d, f), "lib") for d, _, fs in os.walk("lib") for f in fs)))
"""


def _built_files(tmp_path: Path, folders: tuple[str, ...]) -> list[str]:
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in folders:
        shutil.copytree(ROOT / folder, tmp_path / folder, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-c", _BUILD], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    files: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return files


def test_the_link_is_relative_so_every_checkout_and_worktree_resolves_its_own_components():
    link = ROOT / "secure_export" / "components"
    assert link.is_symlink() and os.readlink(link) == "../components"
    assert (link / "__init__.py").resolve() == (ROOT / "components" / "__init__.py").resolve()


def test_the_components_install_as_secure_export_components_only(tmp_path):
    files = _built_files(tmp_path, ("secure_export", "receiver", "components"))
    published = sorted(p.name for p in (ROOT / "components").glob("*.py"))
    assert sorted(f.split("/")[-1] for f in files if f.startswith("secure_export/components/")) == published
    assert not [f for f in files if f.startswith("components/")]
    assert {"secure_export/contract.py", "secure_export/stack/config.py", "secure_export/plan/run.py"} <= set(files)


def test_the_receiver_image_context_without_components_still_builds(tmp_path):
    # receiver/Dockerfile copies pyproject.toml, README.md, secure_export/ and receiver/ only: the link dangles.
    files = _built_files(tmp_path, ("secure_export", "receiver"))
    assert not [f for f in files if "components" in f.split("/")[:-1]]
    assert "secure_export/contract.py" in files and "receiver/__init__.py" in files


def test_the_components_do_not_import_the_stack_config():
    # Config is read at the edge (the program); a consumer calls the components with plain arguments.
    script = (
        "import sys\n"
        "import secure_export.components\n"
        "loaded = ('secure_export.stack.config', 'secure_export.stack.loading', 'secure_export.plan')\n"
        "print(sorted(m for m in sys.modules if m.startswith(loaded)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"
