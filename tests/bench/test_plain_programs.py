"""The program-cost baselines declare what the stack declares, so neither can drift silently.

All three programs run in this process under the components' offline engine (a few seconds, no
timing): the component stack planned from a generated ``Pulumi.bench.yaml``, the like-for-like
``plain-full`` program and the literal ``plain`` program.
"""

from collections import Counter
from pathlib import Path

import pytest

from bench.plain_program import plain_full_program, plain_program
from bench.stack_program import REPOSITORY, STACK, write_stack_file
from secure_export.plan.offline import PlannedResource, PlanResult, run_program
from secure_export.plan.run import plan_file

RULES = 3


@pytest.fixture(scope="module")
def stack_plan(tmp_path_factory: pytest.TempPathFactory) -> PlanResult:
    directory: Path = tmp_path_factory.mktemp("bench-stack")
    return plan_file(write_stack_file(directory, RULES), stack=STACK, project_dir=REPOSITORY)


def _custom(plan: PlanResult) -> dict[tuple[str, str], PlannedResource]:
    return {(r.type, r.name): r for r in plan.resources if r.custom}


def test_plain_full_declares_the_stacks_resources_with_the_same_inputs(stack_plan: PlanResult) -> None:
    full = run_program(plain_full_program(RULES), stack=STACK, project="secure-export")
    stack_resources, full_resources = _custom(stack_plan), _custom(full)
    assert Counter(t for t, _ in full_resources) == Counter(t for t, _ in stack_resources)
    assert Counter(t for t, _ in stack_resources)["azure-native:monitor:MetricAlert"] == RULES
    # Only the five component resources are the stack's own.
    assert {r.type for r in stack_plan.resources if not r.custom} == {
        "secure-export:index:SecureExport",
        "secure-export:index:SecureWebhookIdentity",
        "secure-export:index:ReceiverService",
        "secure-export:index:SecureWebhookActionGroup",
        "secure-export:index:AlertRules",
    }
    assert not any(not r.custom for r in full.resources)
    # Same logical names, so the engine's made-up ids match and every input can match exactly.
    assert set(full_resources) == set(stack_resources)
    for key, record in stack_resources.items():
        assert full_resources[key].inputs == record.inputs, key
        assert full_resources[key].secret_inputs == record.secret_inputs, key
    assert full.outputs == stack_plan.outputs


def test_plain_metric_alerts_carry_the_stacks_rule_inputs(stack_plan: PlanResult) -> None:
    plain = run_program(plain_program(RULES), stack=STACK, project="secure-export")
    assert [r.type for r in plain.resources] == ["azure-native:monitor:MetricAlert"] * RULES
    stack_rules = sorted(
        (r for r in stack_plan.resources if r.type == "azure-native:monitor:MetricAlert"), key=lambda r: r.name
    )
    for literal, rule in zip(plain.resources, stack_rules, strict=True):
        # The literal program has no action group of its own: it points at a fixed id.
        assert {k: v for k, v in literal.inputs.items() if k != "actions"} == {
            k: v for k, v in rule.inputs.items() if k != "actions"
        }
        assert set(literal.inputs["actions"][0]) == set(rule.inputs["actions"][0]) == {"actionGroupId"}
