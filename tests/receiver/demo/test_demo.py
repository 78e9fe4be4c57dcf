"""``secure-export demo`` (what ``make demo`` runs): the whole path, checked from the outside."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.alerts.events import AlertEvent
from receiver.alerts.schema import parse_alert
from receiver.demo.alerts import demo_alerts
from receiver.demo.run import run_demo
from receiver.itsm.base import PermanentBackendError
from receiver.itsm.embedded.queries import list_configuration_items, list_work_items
from receiver.itsm.embedded.store import EmbeddedBackend


def test_demo_command_exits_0_and_prints_resolved_work_items_and_cis(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "secure_export.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # a fresh directory: the demo must not need ../shared or leave files behind
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Work items (6)" in out and "Configuration items (4)" in out
    assert out.count("Resolved  ") >= 3
    assert "Assignment groups (from the demo's routing file): " in out and "Shop On-Call 2" in out
    assert "(reopened 1)" in out and "Reopened: alert" in out
    assert "401  token signed by a key not in the tenant's JWKS" in out
    assert "403  token without the ActionGroupsSecureWebhook role" in out
    assert "503  token naming a key id the JWKS lacks, within the refetch interval  unknown_signing_key" in out
    assert "duplicate" in out
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_kept_database_holds_the_expected_items(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    out = io.StringIO()
    assert run_demo(str(db), out) == 0, out.getvalue()

    items = list_work_items(str(db))
    by_rule = {item["title"].split("] ")[1].split(" on ")[0]: item for item in items}
    assert {rule: item["state"] for rule, item in by_rule.items()} == {
        "vm-cpu-high": "Resolved",
        "checkout-http-5xx": "Resolved",
        "storage-transactions-anomaly": "Resolved",
        "vm-deleted": "New",
        "vm-unavailable": "New",
        "service-health-west-europe": "New",
    }
    # The retried Fired did not create a second item; the early Resolved left nothing open; the
    # second instance of vm-cpu-high reopened its item (reopen window) instead of opening another.
    assert len(items) == 6
    assert {rule: (item["occurrences"], item["reopened"]) for rule, item in by_rule.items()} == {
        rule: ((2, 1) if rule == "vm-cpu-high" else (1, 0)) for rule in by_rule
    }
    # The demo's routing file gave every item a group.
    assert {rule: item["assignment_group"] for rule, item in by_rule.items()} == {
        "vm-cpu-high": "Shop On-Call",
        "checkout-http-5xx": "Azure Monitor Triage",
        "storage-transactions-anomaly": "Shop On-Call",
        "vm-deleted": "Platform Team",
        "vm-unavailable": "Platform Team",
        "service-health-west-europe": "Cloud Platform Team",
    }
    assert all(item["resolved_at"] for item in items if item["state"] == "Resolved")
    assert by_rule["vm-cpu-high"]["priority"] == 3 and by_rule["checkout-http-5xx"]["priority"] == 2

    cis = {ci["name"]: ci for ci in list_configuration_items(str(db))}
    assert set(cis) == {"vm-web-01", "vm-web-02", "vm-batch-07", "stshopdata"}
    assert all(ci["azure_resource_id"] and ci["azure_resource_id"].endswith("/" + name) for name, ci in cis.items())
    assert by_rule["checkout-http-5xx"]["configuration_items"] == ["vm-web-01", "vm-web-02"]

    # Running again against the kept file applies a new set of alert instances, not replays: the
    # stateless ones open new items, the stateful ones (same rules, same VMs) reopen or add items.
    assert run_demo(str(db), io.StringIO()) == 0
    assert len(list_work_items(str(db))) > 6


def test_demo_alerts_are_valid_common_schema_with_resolved_only_where_azure_sends_one() -> None:
    alerts = demo_alerts()
    kinds = {alert.kind for alert in alerts}
    assert {
        "metric alert (static threshold)",
        "log search alert (Log Alerts V2)",
        "activity log alert (administrative)",
        "resource health alert",
        "service health alert",
    } <= kinds
    for alert in alerts:
        fired = parse_alert(json.dumps(alert.fired).encode())
        assert fired.data.essentials.monitor_condition == "Fired"
        stateless = alert.fired["data"]["essentials"]["signalType"] == "Activity Log"
        assert (alert.resolved is None) == stateless
        if alert.resolved is not None:
            resolved = alert.resolved["data"]["essentials"]
            assert resolved["alertId"] == alert.alert_id and resolved["monitorCondition"] == "Resolved"
            assert resolved["resolvedDateTime"] > resolved["firedDateTime"]
    assert len({alert.alert_id for alert in alerts + demo_alerts()}) == 2 * len(alerts)


def test_demo_fails_loudly_when_the_backend_refuses_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def refuse(self: EmbeddedBackend, event: AlertEvent) -> None:
        raise PermanentBackendError("the ITSM tool refused the work item")

    monkeypatch.setattr(EmbeddedBackend, "apply", refuse)
    out = io.StringIO()
    assert run_demo(str(tmp_path / "demo.db"), out) == 1
    assert "FAILED" in capsys.readouterr().err
    assert "Work items (" not in out.getvalue()
