"""The component stack with N generated alert rules, planned offline the way ``secure-export plan`` does.

A generated ``Pulumi.bench.yaml`` with N metric rules shaped like the plain program's is planned by
:func:`components.plan.plan_file`, so the measured path is the real one: the stack file is
validated, then the repository's ``__main__.py`` runs under the components' offline engine
(:func:`components.offline.run_program`). The plain program runs under
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


def write_stack_file(directory: Path, rules: int) -> Path:
    """Write ``Pulumi.bench.yaml`` with ``rules`` generated rules into ``directory``; return its path.

    Written before the clock starts: generating the file is the benchmark's work, not the program's.
    """
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path = directory / f"Pulumi.{STACK}.yaml"
    path.write_text(yaml.dump(stack_document(rules), Dumper=dumper, sort_keys=False))
    return path


def run_generated_stack(stack_file: Path) -> int:
    """Plan the stack file with this checkout's program, as ``secure-export plan`` does; return how many resources it declared."""
    from components.plan import plan_file

    return len(plan_file(stack_file, stack=STACK, project_dir=REPOSITORY).resources)


def run_plain(rules: int) -> int:
    """Run the plain program with ``rules`` metric alerts under the same offline engine."""
    from components.offline import run_program

    result = run_program(plain_program(rules), stack=STACK, project="secure-export")
    return len(result.resources)
