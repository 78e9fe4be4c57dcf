import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from secure_export.stack.config import ConfigError
from secure_export.stack.loading import load_stack_file, stack_file
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT
STACK_FILES = sorted((REPO / "stacks").glob("Pulumi.*.yaml"))
SECURE_EXPORT = Path(sys.executable).parent / "secure-export"


def _dev() -> dict:
    return yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())


def _write(tmp_path: Path, stack: str, document: dict | str) -> Path:
    (tmp_path / "stacks").mkdir(exist_ok=True)
    for name in ("Pulumi.yaml", "__main__.py"):
        target = tmp_path / name
        if not target.exists():
            target.write_text((REPO / name).read_text())
    path = tmp_path / "stacks" / f"Pulumi.{stack}.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_stack_file(path, display=f"stacks/{path.name}")
    return caught.value.problems


def test_there_are_dev_and_prod_stacks():
    assert {p.name for p in STACK_FILES} >= {"Pulumi.dev.yaml", "Pulumi.prod.yaml"}


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_every_stack_file_is_valid(path):
    loaded = load_stack_file(path)
    assert loaded.config.action_group.short_name
    config = loaded.config
    assert config.receiver.image.registry if config.receiver else config.direct_endpoint.url.startswith("https://")


def test_prod_uses_servicenow_with_a_secret_password_and_more_rules_than_dev():
    prod = load_stack_file(REPO / "stacks" / "Pulumi.prod.yaml")
    dev = load_stack_file(REPO / "stacks" / "Pulumi.dev.yaml")
    assert prod.config.receiver.itsm == "servicenow"
    assert prod.config.servicenow_password is not None
    assert "secure-export:servicenowPassword" in prod.secret_keys
    assert "**********" in repr(prod.config.servicenow_password)
    count = lambda c: len(c.alert_rules.metric) + len(c.alert_rules.log) + len(c.alert_rules.activity_log)  # noqa: E731
    assert count(prod.config) > count(dev.config)


def _mutate(change):
    document = _dev()
    change(document["config"])
    return document


def _log_rule(**overrides):
    rule = {
        "name": "dev-heartbeat",
        "severity": 2,
        "scopes": [
            "/subscriptions/6f1c2d3e-0a4b-4c5d-8e9f-0a1b2c3d4e5f/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/w"
        ],
        "evaluationFrequency": "PT5M",
        "windowSize": "PT15M",
        "query": "Heartbeat",
        "timeAggregation": "Count",
        "operator": "GreaterThan",
        "threshold": 0,
    }
    return {**rule, **overrides}


BAD = {
    "severity": (
        lambda c: c["secure-export:alertRules"]["metric"][0].update(severity=9),
        "secure-export:alertRules.metric[0].severity: must be 0..4, got 9",
    ),
    "unknown-key": (
        lambda c: c["secure-export:receiver"].update(correlaton="alert"),
        "secure-export:receiver.correlaton: unknown key",
    ),
    "wrong-type": (
        lambda c: c["secure-export:receiver"].update(minReplicas="lots"),
        "secure-export:receiver.minReplicas: input should be a valid integer",
    ),
    "missing": (
        lambda c: c.pop("secure-export:resourceGroupName"),
        "secure-export:resourceGroupName: required value is missing",
    ),
    "window": (
        lambda c: c["secure-export:alertRules"]["metric"][0].update(windowSize="PT1M"),
        "secure-export:alertRules.metric[0].windowSize: window PT1M is shorter than the evaluation frequency PT5M",
    ),
    "duration": (
        lambda c: c["secure-export:alertRules"]["metric"][0].update(evaluationFrequency="5m"),
        "secure-export:alertRules.metric[0].evaluationFrequency: must be an ISO-8601 duration",
    ),
    "short-name": (
        lambda c: c["secure-export:actionGroup"].update(shortName="far-too-long-name"),
        "secure-export:actionGroup.shortName: must be 1..12 characters",
    ),
    "empty-scopes": (
        lambda c: c["secure-export:alertRules"]["activityLog"][0].update(scopes=[]),
        "secure-export:alertRules.activityLog[0].scopes: must list at least one Azure resource id",
    ),
    "dynamic-periods": (
        lambda c: c["secure-export:alertRules"]["metric"][0]["criteria"][0].update(
            threshold=None, dynamic={"sensitivity": "High", "evaluationPeriods": 2, "minFailingPeriods": 3}
        ),
        "secure-export:alertRules.metric[0].criteria[0].dynamic: minFailingPeriods must not exceed evaluationPeriods",
    ),
    "log-failing-periods": (
        lambda c: c["secure-export:alertRules"].update(
            log=[_log_rule(failingPeriods={"evaluationPeriods": 2, "minFailingPeriods": 3})]
        ),
        "secure-export:alertRules.log[0].failingPeriods: minFailingPeriods must not exceed evaluationPeriods",
    ),
    "unknown-top-key": (lambda c: c.update({"secure-export:colour": "blue"}), "secure-export:colour: unknown key"),
    "plain-secret": (
        lambda c: c.update({"secure-export:servicenowPassword": "hunter2"}),
        "secure-export:servicenowPassword: must be a Pulumi secret",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_stack_file_names_the_key(tmp_path, case):
    change, expected = BAD[case]
    problems = _problems(_write(tmp_path, case, _mutate(change)))
    assert any(p.startswith(f"stacks/Pulumi.{case}.yaml: ") and expected in p for p in problems), problems


def test_every_problem_gets_its_own_line(tmp_path):
    def change(c):
        c["secure-export:alertRules"]["metric"][0]["severity"] = 9
        c["secure-export:receiver"]["colour"] = "blue"

    problems = _problems(_write(tmp_path, "two", _mutate(change)))
    assert len(problems) == 2
    assert all("\n" not in p for p in problems)


def test_yaml_syntax_error_names_the_line(tmp_path):
    problems = _problems(_write(tmp_path, "syntax", "config:\n  secure-export:location: [westeurope\n"))
    assert len(problems) == 1
    assert problems[0].startswith("stacks/Pulumi.syntax.yaml: YAML syntax error at line")


def test_unknown_stack_lists_the_stacks_that_exist(tmp_path):
    _write(tmp_path, "alpha", _dev())
    with pytest.raises(ConfigError, match="unknown stack 'beta'.*stacks that exist: alpha"):
        stack_file(tmp_path, "beta")


def _plan(tmp_path, stack):
    return subprocess.run(
        [str(SECURE_EXPORT), "plan", "--stack", stack],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("case", ["severity", "unknown-key", "wrong-type", "missing", "window"])
def test_console_script_rejects_bad_stack_files_without_a_traceback(tmp_path, case):
    change, expected = BAD[case]
    _write(tmp_path, case, _mutate(change))
    done = _plan(tmp_path, case)
    assert done.returncode != 0
    assert f"stacks/Pulumi.{case}.yaml: {expected}" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_console_script_rejects_yaml_errors_and_unknown_stacks(tmp_path):
    _write(tmp_path, "syntax", "config:\n  secure-export:location: [westeurope\n")
    broken = _plan(tmp_path, "syntax")
    assert broken.returncode != 0 and "stacks/Pulumi.syntax.yaml: YAML syntax error at line" in broken.stderr
    unknown = _plan(tmp_path, "nope")
    assert unknown.returncode != 0 and "unknown stack 'nope'" in unknown.stderr and "syntax" in unknown.stderr
    assert "Traceback" not in broken.stderr + unknown.stderr


def _models_and_typed_dicts(annotation: object) -> list[type]:
    """The pydantic models or TypedDicts an annotation names (through ``list[...]``, ``X | None``)."""
    import typing

    from pydantic import BaseModel

    if isinstance(annotation, type) and (issubclass(annotation, BaseModel) or typing.is_typeddict(annotation)):
        return [annotation]
    return [found for arg in typing.get_args(annotation) for found in _models_and_typed_dicts(arg)]


def _unknown_keys(model: type, args: type, path: str) -> list[str]:
    import typing

    hints = typing.get_type_hints(args)
    unknown = []
    for name, field in model.model_fields.items():
        if name not in hints:
            unknown.append(f"{path}.{name}")
            continue
        inner_models = [m for m in _models_and_typed_dicts(field.annotation) if not typing.is_typeddict(m)]
        inner_args = [t for t in _models_and_typed_dicts(hints[name]) if typing.is_typeddict(t)]
        if inner_models and inner_args:
            unknown += _unknown_keys(inner_models[0], inner_args[0], f"{path}.{name}")
    return unknown


def test_the_dumped_config_models_have_the_component_args_keys():
    # to_args() hands these models' dumps to the components as their TypedDicts: a field the TypedDict
    # lacks would reach a component that ignores it.
    from secure_export.components.alert_rules import ActivityLogAlertRuleArgs, LogAlertRuleArgs, MetricAlertRuleArgs
    from secure_export.components.receiver_database import DatabaseSettings
    from secure_export.stack.config import ActivityLogRuleConfig, DatabaseConfig, LogRuleConfig, MetricRuleConfig

    pairs = [
        (DatabaseConfig, DatabaseSettings),
        (MetricRuleConfig, MetricAlertRuleArgs),
        (LogRuleConfig, LogAlertRuleArgs),
        (ActivityLogRuleConfig, ActivityLogAlertRuleArgs),
    ]
    assert [u for model, args in pairs for u in _unknown_keys(model, args, model.__name__)] == []


def test_to_args_is_the_secure_export_args():

    from secure_export.components.secure_export import ReceiverSettingsArgs, SecureExportArgs
    from secure_export.stack.config import StackConfig

    assert StackConfig.to_args.__annotations__["return"] == SecureExportArgs.__name__
    config = load_stack_file(REPO_ROOT / "stacks" / "Pulumi.prod.yaml").config
    args = config.to_args()
    assert set(args) <= set(SecureExportArgs.__annotations__)
    assert args["receiver"] is not None and set(args["receiver"]) <= set(ReceiverSettingsArgs.__annotations__)
