"""Plan a stack: validate its stack file, then run the project's ``__main__.py`` offline with that config."""

from __future__ import annotations

import runpy
from pathlib import Path

import yaml

from secure_export.plan.offline import PlanResult, no_full_collections, run_program
from secure_export.stack.loading import load_stack_file, stack_file

CHECKOUT = Path(__file__).resolve().parents[2]
"""The checkout (or installation) this module belongs to: the project when none is found or given."""


def find_project_dir(start: Path | None = None) -> Path:
    """Return the directory holding Pulumi.yaml and stacks/: from ``start`` (cwd) upward, else this checkout."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file() and (candidate / "stacks").is_dir():
            return candidate
    return CHECKOUT


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
    project_dir = project_dir or CHECKOUT
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
