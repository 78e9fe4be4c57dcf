"""The subscription allow-list: which subscriptions an alert names, and when it is refused (403)."""

from __future__ import annotations

import pytest

from receiver.auth.errors import AuthError
from receiver.auth.subscriptions import alert_subscriptions, check_subscriptions

SUB_A = "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"
SUB_B = "11111111-1111-1111-1111-111111111111"
ALERT_ID = f"/subscriptions/{SUB_A}/providers/Microsoft.AlertsManagement/alerts/eeeeeeee-4444-5555-6666-ffffffffffff"


def test_subscriptions_from_alert_id_and_targets() -> None:
    targets = [
        f"/subscriptions/{SUB_A}/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm1",
        f"/SUBSCRIPTIONS/{SUB_B.upper()}/resourceGroups/rg2",
    ]
    assert alert_subscriptions(ALERT_ID, targets) == {SUB_A, SUB_B}


def test_ids_without_a_subscription_contribute_nothing() -> None:
    tenant_scoped = "/providers/Microsoft.Management/managementGroups/root"
    assert alert_subscriptions(tenant_scoped, [tenant_scoped, "", "vm1"]) == set()
    assert alert_subscriptions(None, None) == set()


def test_published_placeholder_is_read_as_a_segment() -> None:
    # Microsoft's own sample payload: "/subscriptions/<subscription ID>/providers/..."
    assert alert_subscriptions("/subscriptions/<subscription ID>/providers/x", []) == {"<subscription id>"}


def test_no_allow_list_accepts_everything() -> None:
    check_subscriptions({SUB_A, SUB_B}, None)
    check_subscriptions(set(), None)


def test_allowed_subscription_passes_case_insensitively() -> None:
    check_subscriptions(alert_subscriptions(ALERT_ID.upper(), []), frozenset({SUB_A}))
    check_subscriptions({SUB_A}, frozenset({SUB_A.upper()}))


def test_subscription_not_allowed_is_403() -> None:
    with pytest.raises(AuthError) as raised:
        check_subscriptions(alert_subscriptions(ALERT_ID, []), frozenset({SUB_B}))
    assert raised.value.status == 403
    assert raised.value.code == "forbidden"
    assert SUB_A in raised.value.detail
    assert raised.value.headers == {}


def test_one_target_in_a_foreign_subscription_is_enough_to_refuse() -> None:
    subscriptions = alert_subscriptions(ALERT_ID, [f"/subscriptions/{SUB_B}/resourceGroups/rg"])
    with pytest.raises(AuthError) as raised:
        check_subscriptions(subscriptions, frozenset({SUB_A}))
    assert raised.value.status == 403
    assert SUB_B in raised.value.detail


def test_undeterminable_subscription_fails_closed() -> None:
    with pytest.raises(AuthError) as raised:
        check_subscriptions(alert_subscriptions("/providers/Microsoft.Billing/x", None), frozenset({SUB_A}))
    assert raised.value.status == 403
    assert "SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS" in raised.value.detail
