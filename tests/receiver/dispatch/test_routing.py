"""Routing file: model, loader (every problem at once, with key paths), matcher, and the receiver's use of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.alerts.events import event_from_body
from receiver.dispatch.routing import load_configured, route_event
from receiver.settings import SettingsError, load_settings
from secure_export.routing import RoutingError, RoutingSubject, load_routing, parse_routing

SUB = "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"
VM = f"/subscriptions/{SUB}/resourceGroups/rg-shop-prod/providers/Microsoft.Compute/virtualMachines/vm-1"
DB = f"/subscriptions/{SUB}/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-1/databases/orders"

DESIGN_EXAMPLE = """
routes:                      # first match wins; every key of a match must hold
  - match: {severity: [Sev0, Sev1], resourceGroup: [rg-shop-prod]}
    set: {assignmentGroup: Shop On-Call, category: Hardware, impact: 1, urgency: 1}
  - match: {customProperties: {team: identity}}
    set: {assignmentGroup: Identity Team}
  - match: {monitoringService: ["Activity Log - Administrative"], alertRule: "keyvault-*"}
    set: {assignmentGroup: Payments Platform}
default: {assignmentGroup: Azure Monitor Triage}
"""


@pytest.fixture
def design_routing(tmp_path: Path) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(DESIGN_EXAMPLE)
    return path


def test_design_example_routes_first_match_and_default(design_routing: Path) -> None:
    routing = load_routing(str(design_routing))
    shop = routing.decide(RoutingSubject(severity="Sev1", target_ids=(VM,)))
    assert (shop.rule, shop.assignment_group, shop.category, shop.impact, shop.urgency) == (
        "routes[0]",
        "Shop On-Call",
        "Hardware",
        1,
        1,
    )
    # Every key must hold: the right group but a Sev2 falls through to the default.
    assert routing.decide(RoutingSubject(severity="Sev2", target_ids=(VM,))).assignment_group == "Azure Monitor Triage"
    # Custom properties compare case-insensitively, keys and values.
    assert routing.decide(RoutingSubject(custom_properties={"Team": "IDENTITY"})).assignment_group == "Identity Team"
    keyvault = RoutingSubject(monitoring_service="activity log - administrative", alert_rule="KeyVault-secret-deleted")
    assert routing.decide(keyvault).rule == "routes[2]"
    assert routing.decide(
        RoutingSubject(monitoring_service="Activity Log - Administrative", alert_rule="vm-x")
    ).rule == ("default")
    default = routing.decide(RoutingSubject())
    assert (default.rule, default.assignment_group, default.category) == ("default", "Azure Monitor Triage", None)


def test_first_match_wins_even_when_a_later_rule_matches_too() -> None:
    routing = parse_routing(
        {
            "routes": [
                {"match": {"severity": "Sev0"}, "set": {"assignmentGroup": "First"}},
                {"match": {"severity": ["Sev0", "Sev1"]}, "set": {"assignmentGroup": "Second"}},
            ]
        }
    )
    assert routing.decide(RoutingSubject(severity="Sev0")).assignment_group == "First"
    assert routing.decide(RoutingSubject(severity="Sev1")).assignment_group == "Second"
    assert routing.decide(RoutingSubject(severity="Sev2")).assignment_group is None  # no default: nothing set


@pytest.mark.parametrize(
    ("match", "subject", "expected"),
    [
        ({"subscription": SUB.upper()}, RoutingSubject(target_ids=(VM,)), True),
        ({"subscription": "other"}, RoutingSubject(target_ids=(VM,)), False),
        ({"resourceGroup": "RG-SHOP-PROD"}, RoutingSubject(target_ids=(VM,)), True),
        ({"resourceType": "microsoft.compute/virtualmachines"}, RoutingSubject(target_ids=(VM,)), True),
        ({"resourceType": "Microsoft.Sql/servers/databases"}, RoutingSubject(target_ids=(DB,)), True),
        ({"resourceType": "Microsoft.Sql/servers"}, RoutingSubject(target_ids=(DB,)), False),
        ({"targetResourceId": "*/virtualMachines/vm-*"}, RoutingSubject(target_ids=(VM,)), True),
        ({"targetResourceId": "*/databases/*"}, RoutingSubject(target_ids=(VM,)), False),
        ({"signalType": ["Log", "Metric"]}, RoutingSubject(signal_type="metric"), True),
        ({"alertRule": ["cpu-*", "mem-*"]}, RoutingSubject(alert_rule="mem-high"), True),
        ({"alertRule": "cpu-*"}, RoutingSubject(alert_rule=None), False),
        # A list of targets matches when any target does.
        ({"resourceGroup": "rg-data"}, RoutingSubject(target_ids=(VM, DB)), True),
        # Service health targets only the subscription: taken from the alert id.
        (
            {"subscription": SUB},
            RoutingSubject(alert_id=f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts/x"),
            True,
        ),
        ({"customProperties": {"team": "web", "tier": "1"}}, RoutingSubject(custom_properties={"team": "web"}), False),
    ],
)
def test_each_match_key(match: dict[str, object], subject: RoutingSubject, expected: bool) -> None:
    routing = parse_routing({"routes": [{"match": match, "set": {"assignmentGroup": "G"}}]})
    assert (routing.decide(subject).assignment_group == "G") is expected


def test_a_rule_inherits_what_it_leaves_unset_from_the_default() -> None:
    routing = parse_routing(
        {
            "routes": [{"match": {"severity": "Sev0"}, "set": {"category": "Software", "fields": {"u_team": "a"}}}],
            "default": {"assignmentGroup": "Triage", "category": "Inquiry", "fields": {"contact_type": "monitoring"}},
        }
    )
    decision = routing.decide(RoutingSubject(severity="Sev0"))
    assert (decision.assignment_group, decision.category) == ("Triage", "Software")
    assert dict(decision.fields) == {"contact_type": "monitoring", "u_team": "a"}
    assert decision.default_group == "Triage"


def test_every_problem_is_reported_at_once_with_its_key_path(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        """
routes:
  - match: {severity: [Sev1]}
    set: {assignmentGroup: Fine}
  - match: {severity: [Sev9], region: westeurope}
    set: {impact: 4, fields: {state: '7'}}
  - match: {alertRule: "x"}
  - match: {resourceGroup: []}
    set: {assignmentGroup: "a^ORactive=false", fields: {sys_created_by: x}}
default: {assignmentGroup: Triage, colour: red}
"""
    )
    with pytest.raises(RoutingError) as caught:
        load_routing(str(path))
    problems = caught.value.problems
    assert any(p.startswith("routes[1].match.severity: unknown severity 'Sev9'") for p in problems)
    assert any(p.startswith("routes[1].match.region: unknown key") for p in problems)
    assert any(p.startswith("routes[1].set.impact: ") and "3" in p for p in problems)
    assert any(p.startswith("routes[1].set.fields: 'state' is set by the backend") for p in problems)
    assert any(p.startswith("routes[2].set: Field required") for p in problems)
    assert any(p.startswith("routes[3].match.resourceGroup: ") for p in problems)
    assert any(p.startswith("routes[3].set.assignmentGroup: must not contain '^'") for p in problems)
    assert any(p.startswith("routes[3].set.fields: 'sys_created_by' is not allowed") for p in problems)
    assert any(p.startswith("default.colour: unknown key") for p in problems)
    assert not any(p.startswith("routes[0]") for p in problems)


def test_json_files_and_unreadable_or_malformed_files(tmp_path: Path) -> None:
    good = tmp_path / "routing.json"
    good.write_text(json.dumps({"routes": [{"match": {"severity": "Sev0"}, "set": {"assignmentGroup": "J"}}]}))
    assert load_routing(str(good)).decide(RoutingSubject(severity="Sev0")).assignment_group == "J"
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: [\n")
    with pytest.raises(RoutingError, match="not valid YAML"):
        load_routing(str(bad))
    with pytest.raises(RoutingError, match="cannot read it"):
        load_routing(str(tmp_path / "missing.yaml"))
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(RoutingError, match="must be a mapping"):
        load_routing(str(listed))


def test_the_allow_list_takes_custom_columns_and_refuses_others() -> None:
    routing = parse_routing({"default": {"fields": {"u_cost_center": "CC-1", "location": "Berlin", "notify": 2}}})
    assert dict(routing.default.fields or {}) == {"u_cost_center": "CC-1", "location": "Berlin", "notify": 2}
    with pytest.raises(RoutingError, match="is not a ServiceNow column name"):
        parse_routing({"default": {"fields": {"u_x^ORstate": "1"}}})


def test_the_receiver_attaches_the_decision_to_each_event(design_routing: Path) -> None:
    body = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts/a1",
                "alertRule": "cpu-high",
                "severity": "Sev1",
                "monitorCondition": "Fired",
                "monitoringService": "Platform",
                "alertTargetIDs": [VM],
            },
            "alertContext": {},
            "customProperties": {"team": "web"},
        },
    }
    event = route_event(load_configured(str(design_routing)), event_from_body(json.dumps(body).encode(), "alert"))
    assert event.route is not None and event.route.assignment_group == "Shop On-Call"
    assert event.custom_properties == {"team": "web"}
    assert route_event(load_configured(None), event).route.assignment_group is None


def _env(tmp_path: Path, routing: Path) -> dict[str, str]:
    return {
        "SECURE_EXPORT_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "SECURE_EXPORT_AUDIENCES": "api://secure-export",
        "SECURE_EXPORT_DB": str(tmp_path / "r.db"),
        "SECURE_EXPORT_ROUTING": str(routing),
    }


def test_settings_refuse_an_invalid_routing_file_naming_every_problem(tmp_path: Path) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text("routes:\n  - match: {severity: Sev7}\n    set: {urgency: 0}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(_env(tmp_path, routing) | {"SECURE_EXPORT_REOPEN_WINDOW": "forever"})
    message = str(caught.value)
    assert f"SECURE_EXPORT_ROUTING ({routing}): routes[0].match.severity: unknown severity 'Sev7'" in message
    assert "routes[0].set.urgency" in message
    assert "SECURE_EXPORT_REOPEN_WINDOW" in message  # reported in the same pass


def test_serve_exits_2_on_an_invalid_routing_file(tmp_path: Path) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text("routes:\n  - {match: {severity: [Sev1, Sev3, Sev5]}, set: {assignmentGroup: X}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "secure_export.cli", "serve", "--port", "0"],
        env=_env(tmp_path, routing) | {"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "routes[0].match.severity: unknown severity 'Sev5'" in result.stderr
    assert "Traceback" not in result.stderr


def test_durations_take_seconds_and_iso_8601(tmp_path: Path) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text("{}\n")
    settings = load_settings(
        _env(tmp_path, routing)
        | {
            "SECURE_EXPORT_REOPEN_WINDOW": "PT30M",
            "SECURE_EXPORT_STATELESS_TTL": "P1DT12H",
            "SECURE_EXPORT_FLAP_QUIET": "90",
        }
    )
    assert (settings.reopen_window, settings.stateless_ttl, settings.flap_quiet) == (1800.0, 129600.0, 90.0)
    assert load_settings(_env(tmp_path, routing)).stateless_ttl is None  # default: off
    assert load_settings(_env(tmp_path, routing)).reopen_window == 3600.0  # PT1H
