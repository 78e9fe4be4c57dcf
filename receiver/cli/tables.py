"""Readable tables for the terminal: work items, configuration items, parked deliveries and traces."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

TITLE_WIDTH = 60


CI_WIDTH = 40


GROUP_WIDTH = 24


def print_json(records: list[dict[str, Any]]) -> None:
    json.dump(records, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def print_work_items(items: Sequence[dict[str, Any]], out: TextIO | None = None) -> None:
    """Write work items as a readable table (what ``work-items`` prints without ``--json``)."""
    out = out or sys.stdout
    if not heading("Work items", len(items), out):
        return
    headers = ["NUMBER", "STATE", "SEV", "PRI", "OCC", "GROUP", "OPENED", "RESOLVED", "TITLE", "CIS"]
    rows = [
        [
            item["number"],
            item["state"],
            item["severity"] or "-",
            str(item["priority"]),
            str(item["occurrences"]) + (f" (reopened {item['reopened']})" if item.get("reopened") else ""),
            clip(item.get("assignment_group") or "-", GROUP_WIDTH),
            short_time(item["opened_at"]),
            short_time(item["resolved_at"]),
            clip(item["title"], TITLE_WIDTH),
            clip(", ".join(item["configuration_items"]) or "-", CI_WIDTH),
        ]
        for item in items
    ]
    write_table(headers, rows, out)


def print_configuration_items(cis: Sequence[dict[str, Any]], out: TextIO | None = None) -> None:
    """Write CIs as a readable table (what ``cmdb`` prints without ``--json``)."""
    out = out or sys.stdout
    if not heading("Configuration items", len(cis), out):
        return
    headers = ["ID", "NAME", "FIRST SEEN", "LAST SEEN", "AZURE RESOURCE ID"]
    rows = [
        [
            str(ci["id"]),
            ci["name"],
            short_time(ci["first_seen"]),
            short_time(ci["last_seen"]),
            ci["azure_resource_id"] or "- (no matching alertTargetID)",
        ]
        for ci in cis
    ]
    write_table(headers, rows, out)


def print_parked(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    if not heading("Parked deliveries", len(rows), sys.stdout):
        return
    sys.stdout.write("  accepted (202) but never applied: the backend refused them or kept failing\n")
    columns = list(dict.fromkeys(key for row in rows for key in row if key not in ("body", "payload")))
    write_table(columns, [[cell(row.get(column)) for column in columns] for row in rows])


def print_trace(result: dict[str, Any]) -> None:
    out = sys.stdout
    out.write(f"Alert {result['alert_id']}\n")
    deliveries = result["deliveries"]
    if heading("Deliveries", len(deliveries), out):
        headers = ["ID", "CONDITION", "RECEIVED", "STATE", "ATTEMPTS", "WORK ITEM", "LAST ERROR / NOTE"]
        rows = []
        for d in deliveries:
            note = d.get("last_error") or "-"
            if d["state"] == "discarded":
                note = f"discarded by {d.get('discarded_by')}: {d.get('discard_reason')}"
            rows.append(
                [
                    str(d["id"]),
                    d["condition"],
                    short_time(d["received_at"]),
                    d["state"],
                    str(d["attempts"]),
                    d.get("work_item") or "-",
                    clip(note, TITLE_WIDTH),
                ]
            )
        write_table(headers, rows, out)
        if any(d["state"] == "parked" for d in deliveries):
            out.write(
                "  parked: 'secure-export replay --id N' retries it, "
                "'secure-export discard --id N --reason TEXT' gives it up\n"
            )
        if any(d["state"] == "pending" for d in deliveries):
            out.write("  pending: the dispatcher is still working on it (see the receiver's logs and /readyz)\n")
    else:
        out.write(
            "  the receiver never stored it: check the action group's delivery history and the receiver's 4xx logs\n"
        )
    items = result["work_items"]
    out.write("\n")
    if heading("Became", len(items), out):
        for item in items:
            out.write(f"  {item['number']}" + (f"  {item['url']}" if item.get("url") else "") + "\n")


def heading(title: str, count: int, out: TextIO) -> bool:
    """Write a listing's ``Title (count)`` line, and ``none`` under it when empty; whether rows follow."""
    out.write(f"{title} ({count})\n")
    if not count:
        out.write("  none\n")
    return count > 0


def write_table(headers: list[str], rows: list[list[str]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for line in [headers, ["-" * width for width in widths], *rows]:
        out.write("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        out.write("\n")


def short_time(value: str | None) -> str:
    """``2026-11-26T06:00:00.000Z`` → ``2026-11-26 06:00:00Z`` (tables only; JSON keeps ISO-8601)."""
    if not value:
        return "-"
    return value[:19].replace("T", " ") + "Z"


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return clip(", ".join(str(v) for v in value), CI_WIDTH)
    return clip(str(value), TITLE_WIDTH)
