"""How `secure-export diff` prints a DiffResult: like `pulumi preview --diff`, as a PR comment, or as JSON."""

from __future__ import annotations

import difflib
import html
import json
from typing import Any

from secure_export.review.diff import DiffResult, PropertyChange, ResourceChange

SYMBOL = {"create": "+", "update": "~", "replace": "+-", "delete": "-"}
VERB = {"create": "to create", "update": "to update", "replace": "to replace", "delete": "to delete"}
COMMENT_MARKER = "<!-- secure-export-diff stack={stack} -->"
"""First line of a markdown comment: lets CI find and update its own comment per stack."""


def value_text(value: Any) -> str:
    """Return a value on one line, strings quoted, as pulumi preview prints them."""
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _property_line(change: ResourceChange, prop: PropertyChange) -> str:
    note = "  [forces replacement]" if prop.replaces else ""
    if change.op == "create" or (prop.old is None and prop.new is not None):
        return f"      + {prop.path}: {value_text(prop.new)}{note}"
    if change.op == "delete" or prop.new is None:
        return f"      - {prop.path}: {value_text(prop.old)}{note}"
    return f"      ~ {prop.path}: {value_text(prop.old)} => {value_text(prop.new)}{note}"


def text_diff(prop: PropertyChange) -> list[str]:
    """Return a unified diff of a multi-line string property (a KQL query), or [] for any other value."""
    old, new = prop.old, prop.new
    if not (isinstance(old, str) and isinstance(new, str) and ("\n" in old or "\n" in new)):
        return []
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1)
    return [line for line in lines if not line.startswith(("---", "+++"))]


def _base_text(result: DiffResult, commit: str | None) -> str:
    return f"{result.base} ({commit[:12]})" if commit else result.base


def render_text(result: DiffResult, commit: str | None = None) -> str:
    """Return the human diff: one block per changed resource, then a summary like Pulumi's."""
    lines = [
        f"Stack {result.stack}: {_base_text(result, commit)} => working tree "
        "(offline plan: Pulumi mocks, made-up ids; secrets compared, shown as [secret])",
        "",
    ]
    for change in result.changes:
        lines.append(f"  {SYMBOL[change.op]:<2} {change.type}: {change.name} ({change.op})")
        for prop in change.properties:
            lines.append(_property_line(change, prop))
            lines.extend(f"          {line}" for line in text_diff(prop))
    if result.changes:
        lines.append("")
    lines.append("Resources:")
    counts = result.counts()
    for op, count in counts.items():
        if count:
            lines.append(f"    {SYMBOL[op]:<2} {count} {VERB[op]}")
    total = sum(counts.values())
    lines.append(f"    {total} change{'s' if total != 1 else ''}. {result.unchanged} unchanged")
    return "\n".join(lines) + "\n"


def summary_line(result: DiffResult) -> str:
    """Return the one-line summary a pull-request comment starts with."""
    counts = result.counts()
    if not any(counts.values()):
        return f"No changes: {result.unchanged} resources unchanged."
    parts = [f"{count} {VERB[op]}" for op, count in counts.items() if count]
    return ", ".join(parts) + f"; {result.unchanged} unchanged."


def _code(value: str) -> str:
    # A table cell: pipes would end the cell, newlines the row.
    text = value.replace("|", "\\|").replace("\n", " ")
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(value: Any) -> str:
    return "" if value is None else _code(value_text(value))


def render_markdown(result: DiffResult, commit: str | None = None) -> str:
    """Return a pull-request comment: a summary line, then one collapsible section per changed resource."""
    lines = [
        COMMENT_MARKER.format(stack=result.stack),
        f"### `secure-export diff` — stack `{result.stack}`",
        "",
        f"**{summary_line(result)}** Base `{_base_text(result, commit)}` → this branch; offline plan "
        "(Pulumi mocks, made-up ids), secrets compared but shown as `[secret]`.",
    ]
    for change in result.changes:
        count = len(change.properties)
        replacing = [p.path for p in change.properties if p.replaces]
        why = f" — forced by {', '.join(html.escape(p) for p in replacing)}" if change.op == "replace" else ""
        lines += [
            "",
            "<details>",
            f"<summary><code>{SYMBOL[change.op]}</code> <b>{change.op}</b> <code>{html.escape(change.type)}</code> "
            f"<code>{html.escape(change.name)}</code> ({count} propert{'y' if count == 1 else 'ies'}){why}</summary>",
            "",
        ]
        if change.properties:
            lines += ["| property | old | new |", "| --- | --- | --- |"]
            for prop in change.properties:
                mark = " (forces replacement)" if prop.replaces else ""
                lines.append(f"| {_code(prop.path)}{mark} | {_cell(prop.old)} | {_cell(prop.new)} |")
            for prop in change.properties:
                # A multi-line value (a log alert's query) is easier to review as a line diff.
                hunks = text_diff(prop)
                if hunks:
                    lines += ["", f"{_code(prop.path)}:", "", "```diff", *hunks, "```"]
        else:
            lines.append("_no input properties_")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def render_json(result: DiffResult) -> str:
    """Return the ``diff --json`` document."""
    return json.dumps(result.to_json(), indent=2) + "\n"
