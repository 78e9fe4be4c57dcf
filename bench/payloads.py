"""Realistic common-alert-schema bodies (3–8 KB) with distinct alert ids, rendered cheaply.

A few templates are rendered once with placeholders; each body is then two byte replacements, so
the load generator spends its CPU on sending rather than on ``json.dumps``.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass

SUBSCRIPTION = "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"
_ALERT_PLACEHOLDER = "00000000-0000-4000-8000-00000000a1e7"
_CONDITION_PLACEHOLDER = "__MONITOR_CONDITION__"
_ALERT_ID_PREFIX = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/"

_SEARCH_LINK = (
    "https://portal.azure.com#@cccc2222-dd33-4444-55ee-666666ffffff/blade/Microsoft_Azure_Monitoring_Logs/"
    "LogsBlade/source/Alerts.EmailLinks/scope/%7B%22resources%22%3A%5B%7B%22resourceId%22%3A%22%2F"
    "subscriptions%2F{sub}%2FresourceGroups%2Frg-{env}%2Fproviders%2FMicrosoft.OperationalInsights%2F"
    "workspaces%2Flaw-{env}%22%7D%5D%7D/q/{blob}/prettify/1/timespan/2025-04-15T17%3a08%3a03.0000000Z"
    "%2f2025-04-15T18%3a08%3a03.0000000Z"
)
_API_LINK = (
    "https://api.loganalytics.io/v1/workspaces/dddd3333-ee44-5555-66ff-777777aaaaaa/query?query="
    "{query}%7C%20where%20TimeGenerated%20between%28datetime%282025-04-15T17%3A08%3A03.0000000Z%29.."
    "datetime%282025-04-15T18%3A08%3A03.0000000Z%29%29&timespan=2025-04-15T17%3a08%3a03.0000000Z%2f"
    "2025-04-15T18%3a08%3a03.0000000Z"
)


def alert_id(instance: str) -> str:
    """The ``essentials.alertId`` Azure gives the alert instance ``instance`` (a UUID)."""
    return _ALERT_ID_PREFIX + instance


def _document(rng: random.Random, conditions: int, extra_properties: int) -> dict[str, object]:
    """One Log Alerts V2 payload, shaped like Microsoft's published sample, with ``conditions``
    entries in ``allOf`` (each adds roughly 2.5 KB: dimensions and search links) and
    ``extra_properties`` custom properties (about 45 bytes each)."""
    env = rng.choice(["prod", "staging", "shared"])
    computer = f"vm-{env}-{rng.randrange(1000):03d}"
    target = (
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-{env}/providers/microsoft.compute/virtualmachines/{computer}"
    )
    all_of = []
    for index in range(conditions):
        query = rng.choice(["Heartbeat", "Perf", "Event", "Syslog", "AzureDiagnostics"])
        blob = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(96))
        all_of.append(
            {
                "searchQuery": f"{query} | where Computer == '{computer}' "
                "| summarize count() by bin(TimeGenerated, 5m)",
                "metricMeasureColumn": None,
                "targetResourceTypes": "['Microsoft.Compute/virtualMachines']",
                "operator": "GreaterThan",
                "threshold": str(rng.randrange(1, 100)),
                "timeAggregation": "Count",
                "dimensions": [
                    {"name": "Computer", "value": computer},
                    {"name": "_ResourceId", "value": target},
                    {"name": "Condition", "value": f"condition-{index}"},
                ],
                "metricValue": float(rng.randrange(100, 1000)),
                "failingPeriods": {"numberOfEvaluationPeriods": 1, "minFailingPeriodsToAlert": 1},
                "linkToSearchResultsUI": _SEARCH_LINK.format(sub=SUBSCRIPTION, env=env, blob=blob),
                "linkToFilteredSearchResultsUI": _SEARCH_LINK.format(sub=SUBSCRIPTION, env=env, blob=blob[::-1]),
                "linkToSearchResultsAPI": _API_LINK.format(query=query),
                "linkToFilteredSearchResultsAPI": _API_LINK.format(query=query) + "%7C%20where%20Computer",
            }
        )
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": alert_id(_ALERT_PLACEHOLDER),
                "alertRule": f"bench-rule-{rng.randrange(500):03d}",
                "severity": f"Sev{rng.randrange(5)}",
                "signalType": "Log",
                "monitorCondition": _CONDITION_PLACEHOLDER,
                "monitoringService": "Log Alerts V2",
                "alertTargetIDs": [target],
                "configurationItems": [computer],
                "originAlertId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "firedDateTime": "2025-04-15T18:08:03.626Z",
                "description": f"{conditions} log conditions crossed their thresholds on {computer}",
                "essentialsVersion": "1.0",
                "alertContextVersion": "1.0",
            },
            "alertContext": {
                "properties": {
                    "team": "platform",
                    "runbook": "https://wiki.example.com/runbooks/vm-health",
                    # Custom properties vary the size the way real action groups' do.
                    **{f"customKey{i}": f"value-{rng.getrandbits(64):016x}" for i in range(extra_properties)},
                },
                "conditionType": "LogQueryCriteria",
                "condition": {
                    "windowSize": "PT1H",
                    "allOf": all_of,
                    "windowStartTime": "2025-04-15T17:08:03.626Z",
                    "windowEndTime": "2025-04-15T18:08:03.626Z",
                },
            },
        },
    }


@dataclass(frozen=True, slots=True)
class Template:
    """A rendered body with placeholders for the alert instance and its monitor condition."""

    head: bytes
    middle: bytes
    tail: bytes

    def render(self, instance: str, condition: str = "Fired") -> bytes:
        """The body for alert instance ``instance`` (a UUID string) in ``condition``."""
        return b"".join((self.head, instance.encode(), self.middle, condition.encode(), self.tail))


def templates(seed: int = 7) -> list[Template]:
    """Body templates spanning 3–8 KB (1 or 2 conditions, a few custom properties), deterministic for ``seed``."""
    rng = random.Random(seed)
    result = []
    for conditions, extra_properties in ((1, 0), (1, 20), (2, 0), (2, 12), (2, 30)):
        text = json.dumps(_document(rng, conditions, extra_properties))
        head, rest = text.split(_ALERT_PLACEHOLDER)
        middle, tail = rest.split(_CONDITION_PLACEHOLDER)
        result.append(Template(head.encode(), middle.encode(), tail.encode()))
    return result


def instance_ids(count: int, seed: int) -> list[str]:
    """``count`` distinct alert-instance UUIDs, deterministic for ``seed`` (runs differ by seed)."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]
