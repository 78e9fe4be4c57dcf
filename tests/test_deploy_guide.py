"""docs/deploy.md walked as far as it can be without a cloud.

Every command in its ``sh`` blocks must be a program the guide lists, and its subcommand and flags
must be ones that program accepts: ``secure-export`` commands are run for real (``plan`` of the
shipped example stack must succeed; the others must get past argument parsing), ``pulumi`` and
``az`` commands are checked against their documented syntax (below, with sources), since neither
CLI can run here. The stack-output table must list exactly what the program exports.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "deploy.md"

Spec = dict[str, object]

# flag -> number of values ("+" one or more). Sources: Pulumi CLI reference
# (https://www.pulumi.com/docs/iac/cli/commands/) and Azure CLI reference
# (https://learn.microsoft.com/cli/azure/reference-index), one page per command group.
PULUMI: dict[tuple[str, ...], Spec] = {
    ("login",): {"flags": {"--local": 0, "--cloud-url": 1}, "positionals": (0, 1)},
    ("stack", "init"): {"flags": {"--stack": 1, "-s": 1, "--secrets-provider": 1}, "positionals": (0, 1)},
    ("stack", "output"): {"flags": {"--stack": 1, "-s": 1, "--json": 0, "--show-secrets": 0}, "positionals": (0, 1)},
    ("config", "set"): {
        "flags": {"--secret": 0, "--plaintext": 0, "--path": 0, "--stack": 1, "-s": 1},
        "positionals": (1, 2),
    },
    ("preview",): {"flags": {"--diff": 0, "--stack": 1, "-s": 1}, "positionals": (0, 0)},
    ("up",): {"flags": {"--stack": 1, "-s": 1, "--yes": 0, "-y": 0, "--diff": 0}, "positionals": (0, 0)},
    ("version",): {"flags": {}, "positionals": (0, 0)},
}
_AZ_OUT = {"--query": 1, "--output": 1, "-o": 1}
AZ: dict[tuple[str, ...], Spec] = {
    ("login",): {"flags": {"--tenant": 1, "--use-device-code": 0}, "positionals": (0, 0)},
    ("version",): {"flags": {}, "positionals": (0, 0)},
    ("account", "set"): {"flags": {"--subscription": 1, "-s": 1}, "positionals": (0, 0)},
    ("provider", "register"): {"flags": {"--namespace": 1, "-n": 1, "--wait": 0}, "positionals": (0, 0)},
    ("acr", "build"): {
        "flags": {"--registry": 1, "-r": 1, "--image": 1, "-t": 1, "--file": 1, "-f": 1},
        "positionals": (1, 1),
    },
    ("acr", "repository", "show"): {
        "flags": {"--name": 1, "-n": 1, "--image": 1, "--repository": 1, **_AZ_OUT},
        "positionals": (0, 0),
    },
    ("acr", "show"): {
        "flags": {"--name": 1, "-n": 1, "--resource-group": 1, "-g": 1, **_AZ_OUT},
        "positionals": (0, 0),
    },
    ("containerapp", "exec"): {
        "flags": {
            "--resource-group": 1,
            "-g": 1,
            "--name": 1,
            "-n": 1,
            "--command": 1,
            "--revision": 1,
            "--replica": 1,
            "--container": 1,
        },
        "positionals": (0, 0),
    },
    ("containerapp", "logs", "show"): {
        "flags": {
            "--resource-group": 1,
            "-g": 1,
            "--name": 1,
            "-n": 1,
            "--tail": 1,
            "--follow": 0,
            "--type": 1,
            "--format": 1,
        },
        "positionals": (0, 0),
    },
    # https://learn.microsoft.com/cli/azure/monitor/action-group/test-notifications
    ("monitor", "action-group", "test-notifications", "create"): {
        "flags": {
            "--resource-group": 1,
            "-g": 1,
            "--action-group": 1,
            "--action-group-name": 1,
            "--alert-type": 1,
            "--add-action": "+",
            "--add-actions": "+",
            "-a": "+",
            "--no-wait": 0,
        },
        "positionals": (0, 0),
    },
}
REQUIRED = {("monitor", "action-group", "test-notifications", "create"): ("--alert-type", "--resource-group")}
OTHER_TOOLS = {"git", "cd", "make", "cp", "curl"}


def _commands() -> list[list[str]]:
    text = GUIDE.read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            line = re.sub(r"<[^<>]+>", "PLACEHOLDER", line)
            line = re.sub(r"\$\([^()]*\)", "SUBSTITUTED", line)
            commands.append(shlex.split(line))
    return commands


def _check(spec_table: dict[tuple[str, ...], Spec], argv: list[str]) -> None:
    path = next((p for p in sorted(spec_table, key=len, reverse=True) if tuple(argv[: len(p)]) == p), None)
    assert path is not None, f"unknown command: {' '.join(argv)}"
    spec = spec_table[path]
    flags: dict[str, object] = spec["flags"]
    positionals: list[str] = []
    seen: set[str] = set()
    rest = argv[len(path) :]
    i = 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("-"):
            assert word in flags, f"{' '.join(path)}: unknown flag {word} in {' '.join(argv)}"
            seen.add(word)
            count = flags[word]
            if count == "+":
                i += 1
                start = i
                while i < len(rest) and not rest[i].startswith("-"):
                    i += 1
                assert i > start, f"{word} needs values"
                continue
            assert isinstance(count, int)
            assert i + count < len(rest) + 1 and all(not v.startswith("-") for v in rest[i + 1 : i + 1 + count]), (
                f"{word} needs {count} value(s) in {' '.join(argv)}"
            )
            i += 1 + count
        else:
            positionals.append(word)
            i += 1
    low, high = spec["positionals"]
    assert low <= len(positionals) <= high, f"{' '.join(argv)}: {len(positionals)} positional argument(s)"
    for flag in REQUIRED.get(path, ()):
        assert flag in seen, f"{' '.join(argv)}: {flag} is required"


def _secure_export(args: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_EXPORT_")}
    env["SECURE_EXPORT_DB"] = str(tmp_path / "absent.db")
    args = ["prod" if a == "PLACEHOLDER" and i and args[i - 1] == "--stack" else a for i, a in enumerate(args)]
    result = subprocess.run(
        [sys.executable, "-m", "secure_export.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert result.returncode != 2 and "unrecognized arguments" not in result.stderr, (args, result.stderr)
    if args[:1] in (["plan"], ["--version"]):
        assert result.returncode == 0, (args, result.stderr)


def test_the_guide_has_the_steps_a_newcomer_needs() -> None:
    text = GUIDE.read_text()
    for needle in (
        "az login",
        "az acr build",
        "digest",
        "pulumi preview --diff",
        "pulumi up",
        "pulumi stack output",
        "az monitor action-group test-notifications create",
        "ContainerAppConsoleLogs_CL",
        "Application Administrator",
        "Contributor",
        "infrastructure.md",
    ):
        assert needle in text, needle


def test_every_command_in_the_guide_exists_and_its_flags_parse(tmp_path: Path) -> None:
    commands = _commands()
    assert len(commands) > 15
    for argv in commands:
        program = argv[0]
        if program in (".venv/bin/secure-export", "secure-export"):
            _secure_export(argv[1:], tmp_path)
        elif program == "pulumi":
            _check(PULUMI, argv[1:])
        elif program == "az":
            _check(AZ, argv[1:])
            if argv[1:3] == ["containerapp", "exec"]:
                inner = shlex.split(argv[argv.index("--command") + 1])
                assert inner[0] == "secure-export", inner
                _secure_export(inner[1:], tmp_path)
        else:
            assert program in OTHER_TOOLS, f"the guide uses {program!r}, which its prerequisites do not list"


def test_the_flag_checker_refuses_what_the_clis_would() -> None:
    with pytest.raises(AssertionError, match="unknown flag"):
        _check(PULUMI, ["preview", "--dif"])
    with pytest.raises(AssertionError, match="unknown command"):
        _check(AZ, ["monitor", "action-group", "test-notification", "create"])
    with pytest.raises(AssertionError, match="--alert-type is required"):
        _check(AZ, ["monitor", "action-group", "test-notifications", "create", "--resource-group", "x"])


def test_the_output_table_lists_exactly_what_the_program_exports() -> None:
    import json

    text = GUIDE.read_text()
    section = text.split("## 6. The stack outputs", 1)[1].split("\n## ", 1)[0]
    listed = set(
        re.findall(
            r"`([a-zA-Z]+)`", "".join(line.split("|")[1] for line in section.splitlines() if line.startswith("| `"))
        )
    )
    plan = subprocess.run(
        [sys.executable, "-m", "secure_export.cli", "plan", "--stack", "prod", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert plan.returncode == 0, plan.stderr
    exported = set(json.loads(plan.stdout)["outputs"])
    assert listed == exported
