"""The component stack with N generated alert rules, planned offline the way ``secure-export plan`` does.

A temporary project directory holds the repository's ``Pulumi.yaml`` and ``__main__.py`` (links)
and a generated ``stacks/Pulumi.bench.yaml`` with N metric rules shaped like the plain program's,
so the measured path is the real one: the stack file is validated, then the program runs under the
components' offline engine (:func:`components.offline.run_program`). The plain program runs under
the same engine, so both pay the same mock cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.plain_program import SUBSCRIPTION, plain_program, vm_id

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
            "azure-native:location": "westeurope",
            "secure-export:location": "westeurope",
            "secure-export:resourceGroupName": "rg-bench",
            "secure-export:actionGroup": {"shortName": "sx-bench"},
            "secure-export:receiver": {
                "image": {"registry": "ghcr.io", "repository": "example-org/secure-export", "tag": "0.1.0"},
                "allowedSubscriptions": [SUBSCRIPTION],
            },
            "secure-export:alertRules": {"metric": metric},
        }
    }


def write_project(directory: Path, rules: int) -> Path:
    """Lay out a project in ``directory`` whose ``bench`` stack has ``rules`` generated rules.

    Written before the clock starts: generating the file is the benchmark's work, not the program's.
    """
    (directory / "Pulumi.yaml").symlink_to(REPOSITORY / "Pulumi.yaml")
    (directory / "__main__.py").symlink_to(REPOSITORY / "__main__.py")
    (directory / "stacks").mkdir()
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(stack_document(rules), Dumper=dumper, sort_keys=False)
    (directory / "stacks" / f"Pulumi.{STACK}.yaml").write_text(text)
    return directory


def run_generated_stack(project: Path) -> int:
    """Plan the project's ``bench`` stack offline, as ``secure-export plan`` does; return how many resources it declared."""
    from components.plan import plan_stack

    return len(plan_stack(project, STACK).resources)


def run_plain(rules: int) -> int:
    """Run the plain program with ``rules`` metric alerts under the same offline engine."""
    from components.offline import run_program

    result = run_program(plain_program(rules), stack=STACK, project="secure-export")
    return len(result.resources)
