"""``secure-export plan --policy``: the policy rules over the offline plan, one line per violation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from secure_export.review.policies import RULES, Resource, Violation, evaluate


def plan_resources(plan: Mapping[str, Any], options: Sequence[Mapping[str, bool]] = ()) -> list[Resource]:
    """Return the plan document's resources as rules see them.

    ``options`` are the offline engine's recorded resource options, in the plan's resource order.
    A plan without ``dependsOn`` (older revisions) still links alerts to action groups by id.
    """
    out = []
    for index, item in enumerate(plan.get("resources") or []):
        out.append(
            Resource(
                type=item["type"],
                name=item["name"],
                props=item.get("inputs") or {},
                depends_on=frozenset(item.get("dependsOn") or ()),
                options=dict(options[index]) if index < len(options) else {},
                outputs=item.get("outputs") or {},
            )
        )
    return out


def report(violations: Sequence[Violation], out: TextIO) -> None:
    """Write each violation with its level, policy, resource type and name, then a count per level."""
    if not violations:
        out.write(f"policies: {len(RULES)} checked, no violations\n")
        return
    for v in violations:
        out.write(f"{v.level}: {v.policy}: {v.resource.type} {v.resource.name}: {v.message}\n")
    mandatory = sum(1 for v in violations if v.level == "mandatory")
    out.write(f"policies: {mandatory} mandatory and {len(violations) - mandatory} advisory violation(s)\n")


def check(plan: Mapping[str, Any], options: Sequence[Mapping[str, bool]], out: TextIO) -> int:
    """Run the rules over a plan, report to ``out``, and return 1 when a mandatory rule is broken, else 0."""
    violations = evaluate(plan_resources(plan, options))
    report(violations, out)
    return 1 if any(v.level == "mandatory" for v in violations) else 0
