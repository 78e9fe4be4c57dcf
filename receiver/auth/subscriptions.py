"""The subscription allow-list: which subscriptions' alerts a valid token may deliver (fail closed)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from receiver.auth.errors import AuthError

_SUBSCRIPTION = re.compile(r"/subscriptions/([^/?#]+)", re.IGNORECASE)


def alert_subscriptions(alert_id: str | None, target_ids: Iterable[str] | None) -> set[str]:
    """Subscription ids (lower-cased) named by an alert's ``alertId`` and ``alertTargetIDs``.

    Each ARM id contributes the segment after its first ``/subscriptions/``; ids without one
    (tenant- or management-group-scoped) contribute nothing.
    """
    found: set[str] = set()
    for resource_id in (alert_id, *(target_ids or ())):
        if isinstance(resource_id, str):
            match = _SUBSCRIPTION.search(resource_id)
            if match and match.group(1).strip():
                found.add(match.group(1).strip().lower())
    return found


def check_subscriptions(subscriptions: set[str], allowed: frozenset[str] | None) -> None:
    """Raise a 403 :class:`AuthError` unless every subscription is allowed.

    ``allowed`` None means no allow-list (all accepted). With an allow-list, an alert whose
    subscription cannot be determined is refused: fail closed.
    """
    if allowed is None:
        return
    allowed_lower = {sub.strip().lower() for sub in allowed}
    if not subscriptions:
        raise AuthError.forbidden(
            "the alert names no subscription (alertId/alertTargetIDs), so SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS "
            "cannot admit it"
        )
    refused = sorted(sub[:64] for sub in subscriptions if sub.lower() not in allowed_lower)
    if refused:
        raise AuthError.forbidden(
            f"alerts from subscription {', '.join(refused[:5])} are not accepted here "
            "(not in SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS)"
        )
