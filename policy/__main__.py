"""The secure-export policy pack: ``pulumi preview --policy-pack policy``.

The rules themselves live in ``secure_export/review/policies.py`` (standard library only), shared
with ``secure-export plan --policy``; this file only turns each into a Pulumi policy and the
engine's view of a resource into the rules' :class:`~secure_export.review.policies.Resource`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The pack's folder sits in the project: its parent holds the shared rules.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import (  # noqa: E402 - imports follow the sys.path line above
    EnforcementLevel,
    Policy,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from secure_export.review.policies import RULES, NotApplicable, Resource, Rule  # noqa: E402 - needs the sys.path line

PACK_NAME = "secure-export"
LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}


def options_of(opts: Any) -> dict[str, bool]:
    """Return the resource options the rules read; ``retainOnDelete`` only when this SDK shows it."""
    out = {"protect": bool(getattr(opts, "protect", False))}
    retain = getattr(opts, "retain_on_delete", None)
    if retain is not None:
        out["retainOnDelete"] = bool(retain)
    return out


def resource_of(args: ResourceValidationArgs) -> Resource:
    """Return the rules' view of the resource under validation."""
    return Resource(type=args.resource_type, name=args.name, props=args.props, options=options_of(args.opts))


def stack_of(args: StackValidationArgs) -> tuple[list[Resource], dict[str, str]]:
    """Return the stack's resources as the rules see them, and each name's URN."""
    resources, urns = [], {}
    for item in args.resources:
        names = {d.name for d in item.dependencies}
        for deps in item.property_dependencies.values():
            names.update(d.name for d in deps)
        resources.append(
            Resource(
                type=item.resource_type,
                name=item.name,
                props=item.props,
                depends_on=frozenset(names),
                options=options_of(item.opts),
            )
        )
        urns[item.name] = item.urn
    return resources, urns


def _resource_validation(rule: Rule) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in rule.types or rule.check is None:
            return
        try:
            messages = rule.check(resource_of(args))
        except NotApplicable as exc:
            args.not_applicable(str(exc))
            return
        for message in messages:
            report_violation(message, None)

    return validate


def _stack_validation(rule: Rule) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        assert rule.stack_check is not None
        resources, urns = stack_of(args)
        for resource, message in rule.stack_check(resources):
            report_violation(message, urns.get(resource.name))

    return validate


def build_policies() -> list[Policy]:
    """Return one Pulumi policy per shared rule, at the rule's enforcement level."""
    policies: list[Policy] = []
    for rule in RULES:
        if rule.stack_check is not None:
            policies.append(
                StackValidationPolicy(
                    name=rule.name,
                    description=rule.description,
                    validate=_stack_validation(rule),
                    enforcement_level=LEVELS[rule.level],
                )
            )
        else:
            policies.append(
                ResourceValidationPolicy(
                    name=rule.name,
                    description=rule.description,
                    validate=_resource_validation(rule),
                    enforcement_level=LEVELS[rule.level],
                )
            )
    return policies


if __name__ == "__main__":
    # Serves the policies to the Pulumi engine until it stops the pack.
    PolicyPack(name=PACK_NAME, policies=build_policies(), enforcement_level=EnforcementLevel.ADVISORY)
