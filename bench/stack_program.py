"""The component stack with N generated alert rules, planned offline as ``secure-export plan`` does.

A generated ``Pulumi.bench.yaml`` goes through the plan function that command uses, so the measured
path is the real one: validation, then the repository's ``__main__.py`` under the offline engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.plain_program import (
    ACTION_GROUP_SHORT_NAME,
    IMAGE_REGISTRY,
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    LOCATION,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    plain_full_program,
    plain_program,
    vm_id,
)

REPOSITORY = Path(__file__).resolve().parent.parent
STACK = "bench"


def stack_document(rules: int) -> dict[str, Any]:
    """A valid stack file with ``rules`` metric alert rules (the plain program's rules, as config)."""
    metric = [
        {
            "name": f"cpu-high-{index:05d}",
            "description": f"CPU above 90% on vm-{index:05d}",
            "severity": index % 5,
            "scopes": [vm_id(index)],
            "evaluationFrequency": "PT1M",
            "windowSize": "PT5M",
            "criteria": [
                {
                    "metricName": "Percentage CPU",
                    "metricNamespace": "Microsoft.Compute/virtualMachines",
                    "timeAggregation": "Average",
                    "operator": "GreaterThan",
                    "threshold": 90,
                }
            ],
        }
        for index in range(rules)
    ]
    return {
        "config": {
            "azure-native:location": LOCATION,
            "secure-export:location": LOCATION,
            "secure-export:resourceGroupName": RESOURCE_GROUP,
            "secure-export:actionGroup": {"shortName": ACTION_GROUP_SHORT_NAME},
            "secure-export:receiver": {
                "image": {"registry": IMAGE_REGISTRY, "repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG},
                "allowedSubscriptions": [SUBSCRIPTION],
            },
            "secure-export:alertRules": {"metric": metric},
        }
    }


def write_stack_file(directory: Path, rules: int) -> Path:
    """Write ``Pulumi.bench.yaml`` with ``rules`` generated rules into ``directory``; return its path.

    Written before the clock starts: generating the file is the benchmark's work, not the program's.
    """
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path = directory / f"Pulumi.{STACK}.yaml"
    path.write_text(yaml.dump(stack_document(rules), Dumper=dumper, sort_keys=False))
    return path


def run_generated_stack(stack_file: Path) -> int:
    """Plan ``stack_file`` with this checkout's program as ``secure-export plan`` does; the resources declared."""
    from secure_export.plan.run import plan_file

    return len(plan_file(stack_file, stack=STACK, project_dir=REPOSITORY).resources)


def run_plain(kind: str, rules: int) -> int:
    """Run a plain program under the same offline engine: ``plain`` (the literal one, ``rules``
    metric alerts only) or ``plain-full`` (the stack's resources, no components)."""
    from secure_export.plan.offline import run_program

    program = plain_full_program(rules) if kind == "plain-full" else plain_program(rules)
    result = run_program(program, stack=STACK, project="secure-export")
    return len(result.resources)
