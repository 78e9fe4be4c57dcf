"""Conformance: Microsoft's published common-alert-schema payloads, over real HTTP, into work items.

The corpus lives in ``shared/samples/common-alert-schema/`` beside the repository (CI keeps a copy
of ``shared/`` next to the clone). Each sample goes to a receiver of its own (published samples
reuse the same ``alertId``, so one receiver would see them as retries of each other), with a
real token from a local issuer, the inbox, the dispatcher and the embedded backend:

* full payloads (``*.test-action.json``, ``legacy*`` and the "Sample alert payload" files) are
  accepted with 202 and become a work item; a published Resolved is preceded by its Fired (the
  same payload with ``monitorCondition: Fired``) and must leave the item Resolved;
* ``*.alertcontext.json`` fragments are wrapped in a full payload with ``essentials`` of the
  matching ``monitoringService``, then treated the same way;
* ``*.not-common-schema.json`` is refused with 422 and stores nothing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from receiver.demo.local_issuer import LocalIssuer
from receiver.itsm.embedded.queries import list_configuration_items, list_work_items
from tests.support.paths import SAMPLES
from tests.support.prerequisites import require
from tests.support.receivers import start_receiver

_MISSING = f"conformance corpus not found at {SAMPLES} (shared/ is expected beside the repository)"
_FILES = sorted(SAMPLES.glob("*.json")) if SAMPLES.is_dir() else []
# Without the corpus every parametrized test still gets one item, so that the autouse fixture
# below reports the missing corpus (a skip locally, a failure under CI=true) instead of pytest
# silently skipping an empty parameter set.
_PLACEHOLDER = SAMPLES / "corpus-missing.json"


def _corpus(*, refused: bool) -> list[Path]:
    """The samples the receiver must refuse (or accept), or the placeholder when there are none."""
    return [p for p in _FILES if p.name.endswith(".not-common-schema.json") == refused] or [_PLACEHOLDER]


@pytest.fixture(autouse=True)
def _corpus_present() -> None:
    require(bool(_FILES), _MISSING)


SUBSCRIPTION = "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"
VM_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-conformance"
    "/providers/Microsoft.Compute/virtualMachines/vm-conformance"
)

# fragment name prefix -> (monitoringService, signalType) of the essentials it is published under
_FRAGMENT_ESSENTIALS: list[tuple[str, str, str]] = [
    ("activity-log-administrative", "Activity Log - Administrative", "Activity Log"),
    ("activity-log-autoscale", "Activity Log - Autoscale", "Activity Log"),
    ("activity-log-policy", "Activity Log - Policy", "Activity Log"),
    ("activity-log-security", "Activity Log - Security", "Activity Log"),
    ("application-insights-v1", "Application Insights", "Log"),
    ("log-alerts-v2", "Log Alerts V2", "Log"),
    ("log-analytics-v1", "Log Analytics", "Log"),
    ("platform-metric", "Platform", "Metric"),
    ("prometheus", "Prometheus", "Metric"),
    ("resource-health", "Resource Health", "Activity Log"),
    ("service-health", "ServiceHealth", "Activity Log"),
    ("simple-log-alert", "Simple Log Alert", "Log"),
]


def _sample_id(path: Path) -> str:
    return path.name.removesuffix(".json")


def _wrap_fragment(path: Path, fragment: dict[str, Any]) -> dict[str, Any]:
    """A full common-schema payload around a published ``{"alertContext": ...}`` fragment."""
    stem = path.name.removeprefix("legacy2020-")
    service, signal = next((s, t) for prefix, s, t in _FRAGMENT_ESSENTIALS if stem.startswith(prefix))
    essentials = {
        "alertId": (
            f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/conformance-{_sample_id(path)}"
        ),
        "alertRule": f"conformance-{_sample_id(path)}",
        "severity": "Sev2",
        "signalType": signal,
        "monitorCondition": "Fired",
        "monitoringService": service,
        "alertTargetIDs": [VM_ID],
        "configurationItems": ["vm-conformance"],
        "originAlertId": f"conformance-{_sample_id(path)}",
        "firedDateTime": "2026-11-26T06:00:00.000Z",
        "description": f"wrapped fragment {path.name}",
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    return {"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": essentials, **fragment}}


def _as_fired(resolved: dict[str, Any]) -> dict[str, Any]:
    fired = copy.deepcopy(resolved)
    essentials = fired["data"]["essentials"]
    essentials["monitorCondition"] = "Fired"
    essentials.pop("resolvedDateTime", None)
    return fired


def _deliveries(path: Path) -> list[dict[str, Any]]:
    document = json.loads(path.read_text())
    if path.name.endswith(".alertcontext.json"):
        return [_wrap_fragment(path, document)]
    if document["data"]["essentials"]["monitorCondition"] == "Resolved":
        return [_as_fired(document), document]
    return [document]


def test_the_corpus_has_every_kind_the_readme_describes() -> None:
    names = [path.name for path in _FILES]
    assert sum(name.endswith(".not-common-schema.json") for name in names) == 1
    assert sum(name.endswith(".alertcontext.json") for name in names) >= 10
    assert sum(name.endswith(".test-action.json") for name in names) >= 10
    assert any("resolved" in name for name in names)


@pytest.mark.parametrize("path", _corpus(refused=False), ids=_sample_id)
def test_sample_is_accepted_and_becomes_a_work_item(path: Path, tmp_path: Path, issuer: LocalIssuer) -> None:
    deliveries = _deliveries(path)
    essentials = deliveries[-1]["data"]["essentials"]
    with start_receiver(tmp_path, issuer) as receiver:
        for delivery in deliveries:
            response = receiver.post_alert(delivery, issuer.mint())
            assert response.status_code == 202, response.text
        counts = receiver.wait_dispatched()
        assert counts["parked"] == 0, counts
        items = list_work_items(receiver.db_path)
        cis = list_configuration_items(receiver.db_path)

    [item] = items
    assert item["alert_ids"] == [essentials["alertId"]]
    expected_state = "Resolved" if essentials["monitorCondition"] == "Resolved" else "New"
    assert item["state"] == expected_state
    assert (item["resolved_at"] is not None) == (expected_state == "Resolved")
    severity = essentials.get("severity")
    assert item["severity"] == severity
    assert item["priority"] == {"Sev0": 1, "Sev1": 2, "Sev2": 3, "Sev3": 4, "Sev4": 5}.get(severity, 3)
    names = list(dict.fromkeys(essentials.get("configurationItems") or []))
    assert item["configuration_items"] == names
    assert [ci["name"] for ci in cis] == names
    for ci in cis:
        targets = [
            t for t in essentials.get("alertTargetIDs") or [] if t.rsplit("/", 1)[-1].lower() == ci["name"].lower()
        ]
        assert ci["azure_resource_id"] == (targets[0] if targets else None)
    if essentials.get("alertRule"):
        assert essentials["alertRule"] in item["title"]
    for target in essentials.get("alertTargetIDs") or []:
        assert target in item["description"]


@pytest.mark.parametrize("path", _corpus(refused=True), ids=_sample_id)
def test_not_the_common_schema_is_refused_with_422(path: Path, tmp_path: Path, issuer: LocalIssuer) -> None:
    with start_receiver(tmp_path, issuer) as receiver:
        response = receiver.post_alert(path.read_bytes(), issuer.mint())
        assert response.status_code == 422, response.text
        assert response.json()["error"]
        assert receiver.inbox_counts() == {"pending": 0, "done": 0, "parked": 0}
        assert list_work_items(receiver.db_path) == []


def test_resolved_sample_alone_leaves_no_open_work_item(tmp_path: Path, issuer: LocalIssuer) -> None:
    resolved = json.loads((SAMPLES / "platform-metric-static-resolved.json").read_text())
    with start_receiver(tmp_path, issuer) as receiver:
        assert receiver.post_alert(resolved, issuer.mint()).status_code == 202
        receiver.wait_dispatched()
        assert list_work_items(receiver.db_path) == []
        # Its Fired, retried by Azure after the Resolved: recorded, already resolved.
        assert receiver.post_alert(_as_fired(resolved), issuer.mint(version=2)).status_code == 202
        receiver.wait_dispatched()
        [item] = list_work_items(receiver.db_path)
    assert item["state"] == "Resolved"


def test_rule_target_groups_the_same_sample_fired_on_two_instances(tmp_path: Path, issuer: LocalIssuer) -> None:
    fired = json.loads((SAMPLES / "platform-metric-static-fired.test-action.json").read_text())
    second = copy.deepcopy(fired)
    second["data"]["essentials"]["alertId"] += "-second-instance"
    resolved_first, resolved_second = copy.deepcopy(fired), copy.deepcopy(second)
    for payload in (resolved_first, resolved_second):
        payload["data"]["essentials"]["monitorCondition"] = "Resolved"
        payload["data"]["essentials"]["resolvedDateTime"] = "2025-04-15T18:30:00.000Z"

    with start_receiver(tmp_path, issuer, correlation="rule-target") as receiver:
        for payload in (fired, second, resolved_first):
            assert receiver.post_alert(payload, issuer.mint()).status_code == 202
        receiver.wait_dispatched()
        [item] = list_work_items(receiver.db_path)
        assert (item["occurrences"], item["state"]) == (2, "New")
        assert receiver.post_alert(resolved_second, issuer.mint()).status_code == 202
        receiver.wait_dispatched()
        [item] = list_work_items(receiver.db_path)
    assert item["state"] == "Resolved"
    assert item["alert_ids"] == [
        fired["data"]["essentials"]["alertId"],
        second["data"]["essentials"]["alertId"],
    ]
