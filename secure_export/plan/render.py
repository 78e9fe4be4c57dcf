"""The plan's two shapes: the JSON contract of docs/design.md and the tree ``secure-export plan`` prints.

Secret values print as ``[secret]``.
"""

from __future__ import annotations

import json
from typing import Any

from secure_export.plan.offline import SECRET_MASK, PlanResult, masked, plain_numbers, public_inputs
from secure_export.plan.tool_side import tool_side_lines


def to_json(result: PlanResult) -> dict[str, Any]:
    """Return the plan as the JSON contract of docs/design.md.

    ``{"stack", "offline": true, "resources": [{type, name, parent, inputs, outputs, dependsOn}], "outputs"}``.
    """
    secrets = result.secret_values
    resources = []
    for record in result.resources:
        made_up, _ = masked(record.outputs, secrets)
        resources.append(
            {
                "type": record.type,
                "name": record.name,
                "parent": record.parent,
                "inputs": public_inputs(record, secrets),
                "outputs": plain_numbers(made_up),
                "dependsOn": list(record.depends_on),
            }
        )
    outputs: dict[str, Any] = {}
    for key, value in result.outputs.items():
        outputs[key] = SECRET_MASK if key in result.secret_outputs else plain_numbers(masked(value, secrets)[0])
    return {"stack": result.stack, "offline": True, "resources": resources, "outputs": outputs}


def render_tree(plan: dict[str, Any]) -> str:
    """Return the plan as a readable tree of resources and the stack outputs."""
    resources = plan["resources"]
    children: dict[str | None, list[dict[str, Any]]] = {}
    names = {r["name"] for r in resources}
    for r in resources:
        parent = r["parent"] if r["parent"] in names else None
        children.setdefault(parent, []).append(r)
    components = sum(1 for r in resources if r["type"].startswith("secure-export:index:"))
    lines = [
        f"stack {plan['stack']}: {len(resources) - components} resources in {components} components "
        "(offline: Pulumi mocks, made-up ids)",
        "",
    ]

    def walk(parent: str | None, prefix: str) -> None:
        kids = children.get(parent, [])
        for index, r in enumerate(kids):
            last = index == len(kids) - 1
            branch = "" if parent is None else ("└─ " if last else "├─ ")
            ident = r["outputs"].get("id")
            suffix = f"  id={ident}" if ident else ""
            lines.append(f"{prefix}{branch}{r['name']}  ({r['type']}){suffix}")
            inner = prefix + ("" if parent is None else ("   " if last else "│  "))
            if r.get("dependsOn"):
                below = "│  " if children.get(r["name"]) else "   "
                lines.append(f"{inner}{below}waits for: {', '.join(r['dependsOn'])}")
            walk(r["name"], inner)

    walk(None, "")
    lines.append("")
    lines.append("outputs:")
    for key, value in plan["outputs"].items():
        lines.append(f"  {key}: {json.dumps(value) if not isinstance(value, str) else value}")
    side = tool_side_lines(plan["outputs"])
    if side:
        lines += ["", *side]
    return "\n".join(lines) + "\n"
