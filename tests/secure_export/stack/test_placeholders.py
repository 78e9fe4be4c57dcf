"""Placeholders (secure_export/stack/placeholders.py): plan warns about each one left in a stack, naming its key."""

import base64
import os

import pytest
import yaml

from secure_export.stack.loading import load_stack_file
from secure_export.stack.placeholders import example_guid, placeholder_ciphertext, placeholder_digest
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT
PROD = "stacks/Pulumi.prod.yaml"


@pytest.fixture(scope="module")
def prod_warnings() -> list[str]:
    return load_stack_file(REPO / PROD, display=PROD).warnings


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("receiver.image.digest", "placeholder digest"),
        ("servicenowPassword", "not the ciphertext of a secret"),
        ("servicenow.url", "'contoso'"),
        ("actionGroup.emailReceivers[0].emailAddress", "'contoso'"),
        ("receiver.image.registryResourceId", "example GUID 00000000-0000-0000-0000-000000000000"),
        ("alertRules.metric[0].scopes[0]", "example GUID"),
        ("alertRules.activityLog[0].scopes[0]", "example GUID"),
    ],
)
def test_prod_plan_warns_about_each_placeholder_naming_its_key(prod_warnings, key, why):
    lines = [w for w in prod_warnings if w.startswith(f"{PROD}: secure-export:{key}: placeholder: ")]
    assert len(lines) == 1, prod_warnings
    assert why in lines[0]


def test_placeholder_warnings_show_no_secret(prod_warnings):
    ciphertext = yaml.safe_load((REPO / PROD).read_text())["config"]["secure-export:servicenowPassword"]["secure"]
    assert all(ciphertext not in w for w in prod_warnings)


def test_descriptions_and_queries_are_not_scanned(tmp_path):
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    rule = document["config"]["secure-export:alertRules"]["metric"][0]
    rule["description"] = "for example, the contoso build agent"
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(yaml.safe_dump(document))
    assert not any(".description:" in w for w in load_stack_file(path).warnings)


def test_a_real_looking_stack_has_no_placeholder_warnings(tmp_path):
    text = (REPO / PROD).read_text()
    text = text.replace("00000000-0000-0000-0000-000000000000", "6f1c2d3e-0a4b-4c5d-8e9f-0a1b2c3d4e5f")
    text = text.replace("contoso", "northbank").replace("sha256:" + "0" * 64, "sha256:" + "3b0c4429" * 8)
    real = "v1:" + base64.b64encode(os.urandom(12)).decode() + ":" + base64.b64encode(os.urandom(40)).decode()
    document = yaml.safe_load(text)
    document["config"]["secure-export:servicenowPassword"] = {"secure": real}
    path = tmp_path / "Pulumi.real.yaml"
    path.write_text(yaml.safe_dump(document))
    assert [w for w in load_stack_file(path).warnings if "placeholder" in w] == []


def test_detectors():
    assert example_guid("00000000-0000-0000-0000-000000000000")
    assert example_guid("11111111-1111-4111-8111-111111111111")
    assert example_guid("12345678-1234-1234-1234-123456789012")
    assert not example_guid("6f1c2d3e-0a4b-4c5d-8e9f-0a1b2c3d4e5f")
    assert placeholder_digest("sha256:" + "0" * 64)
    assert placeholder_digest("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert not placeholder_digest("sha256:" + "3b0c4429" * 8)
    assert placeholder_ciphertext("v1:" + base64.b64encode(b"replace with pulumi config set --secret").decode())
    assert placeholder_ciphertext("not base64 at all!")
    assert not placeholder_ciphertext("v1:" + base64.b64encode(bytes(range(200, 248))).decode())


def test_plan_prints_the_warnings_to_stderr_one_line_each_and_exits_0(capsys, monkeypatch):
    from secure_export.plan.cli import main

    monkeypatch.chdir(REPO)
    assert main(["--stack", "prod", "--json"]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.splitlines()
    assert f"warning: {PROD}: secure-export:receiver.image.digest: placeholder: " in captured.err
    assert all(line.startswith(f"warning: {PROD}: secure-export:") for line in warnings), warnings
    assert "warning" not in captured.out


def test_the_program_logs_the_same_warnings_under_pulumi_up():
    # __main__.py reads the engine's config and warns through pulumi.log, as `pulumi up` shows it.
    from secure_export.plan.run import plan_stack

    logged = [message for level, message in plan_stack(REPO, "prod").engine_log if level == "WARNING"]
    assert any(m.startswith("stack prod: secure-export:receiver.image.digest: placeholder: ") for m in logged), logged
