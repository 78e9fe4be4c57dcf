"""The ServiceNow backend's own metric families (:class:`~receiver.itsm.base.MetricFamily`).

Labels are bounded: table names (``em_event`` for Event Management), HTTP methods, status codes,
token outcomes and the routing file's names; never a URL, query or credential.
"""

from __future__ import annotations

from collections.abc import Mapping

from receiver.itsm.base import MetricFamily

HTTP_REQUESTS = "secure_export_servicenow_http_requests"
TOKEN_REQUESTS = "secure_export_servicenow_token_requests"
UNRESOLVED_NAMES = "secure_export_routing_unresolved_names"


def metric_families(
    calls: Mapping[tuple[str, str, str], int],
    token_outcomes: Mapping[str, int],
    unresolved_names: Mapping[tuple[str, str], str],
) -> list[MetricFamily]:
    """HTTP requests by ``(table, method, status)``, token requests by outcome, unresolved routing names."""
    return [
        MetricFamily(
            HTTP_REQUESTS,
            "ServiceNow REST API requests by table (em_event for Event Management), HTTP method and status "
            "(HTTP code, timeout or error); OAuth token requests are counted separately",
            ("table", "method", "status"),
            {key: float(count) for key, count in calls.items()},
        ),
        MetricFamily(
            TOKEN_REQUESTS,
            "OAuth token requests to ServiceNow's /oauth_token.do by outcome: ok, refused (credentials "
            "rejected) or unavailable (timeout, connection error, 429 or 5xx); none with basic auth",
            ("outcome",),
            {(outcome,): float(count) for outcome, count in token_outcomes.items()},
        ),
        MetricFamily(
            UNRESOLVED_NAMES,
            "Routing names (assignment groups, business services, callers) that do not resolve in ServiceNow: "
            "1 per name, by kind (their items go to the default group with a work note); names come from "
            "the routing file, so the label set is bounded",
            ("kind", "name"),
            {(kind, name): 1.0 for kind, name in unresolved_names},
            kind="gauge",
        ),
    ]
