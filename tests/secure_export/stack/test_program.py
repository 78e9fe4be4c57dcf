import json
import runpy

import pulumi
import pytest

from secure_export.plan.offline import PlannedResource, public_inputs, run_program
from secure_export.stack.config import ConfigError
from secure_export.stack.loading import load_pulumi_config, load_stack_file
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT


def _engine_config(stack: str) -> tuple[dict[str, str], list[str]]:
    loaded = load_stack_file(REPO / "stacks" / f"Pulumi.{stack}.yaml")
    return dict(loaded.pulumi_config), list(loaded.secret_keys)


def _run_main(config, secret_keys, stack="prod"):
    return run_program(
        lambda: runpy.run_path(str(REPO / "__main__.py"), run_name="__main__"),
        stack=stack,
        config=config,
        secret_keys=secret_keys,
    )


def test_main_declares_one_secure_export_from_engine_config():
    config, secret_keys = _engine_config("prod")
    result = _run_main(config, secret_keys)
    assert [r.name for r in result.resources if r.type == "secure-export:index:SecureExport"] == ["secure-export"]
    assert result.outputs["webhookUrl"].endswith("/api/alerts")


def test_main_stops_with_a_run_error_on_invalid_engine_config():
    config, secret_keys = _engine_config("dev")
    rules = json.loads(config["secure-export:alertRules"])
    rules["metric"][0]["severity"] = 9
    config["secure-export:alertRules"] = json.dumps(rules)
    with pytest.raises(pulumi.RunError, match="invalid stack configuration"):
        _run_main(config, secret_keys, stack="dev")


def test_engine_config_path_names_the_key_and_refuses_plaintext_credentials():
    config, _ = _engine_config("prod")
    problems: list[str] = []

    def program():
        try:
            load_pulumi_config()
        except ConfigError as exc:
            problems.extend(exc.problems)

    run_program(program, stack="prod", config=config, secret_keys=[])
    assert any(
        p.startswith("stack prod: secure-export:servicenowPassword: must be a Pulumi secret") for p in problems
    ), problems


def test_secret_property_without_known_secret_leaves_is_masked_whole():
    record = PlannedResource(
        type="t",
        name="n",
        parent=None,
        inputs={"connection": {"host": "db", "password": "opaque"}, "plain": 1.0},
        outputs={},
        custom=True,
        secret_inputs=frozenset({"connection"}),
    )
    assert public_inputs(record, frozenset()) == {"connection": "[secret]", "plain": 1}
    assert public_inputs(record, frozenset({"opaque"})) == {
        "connection": {"host": "db", "password": "[secret]"},
        "plain": 1,
    }
