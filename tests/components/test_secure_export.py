import pulumi

from secure_export.components import SecureExport
from secure_export.plan.offline import FakeCloud
from tests.support.plans import (
    ACTION_GROUP,
    APPLICATION,
    CONTAINER_APP,
    LOG_ALERT,
    METRIC_ALERT,
    SUB_A,
    SUB_B,
    declare,
    log_rule,
    metric_rule,
    one,
)

ARGS = {
    "location": "westeurope",
    "resource_group_name": "rg-sx",
    "action_group_short_name": "sx",
    "receiver": {"image_registry": "ghcr.io", "image_repository": "example/secure-export", "image_tag": "1.0.0"},
    "metric_alerts": [metric_rule()],
    "log_alerts": [log_rule()],
}


def _export(**overrides):
    def program():
        export = SecureExport("sx", {**ARGS, **overrides})
        for name in (
            "receiver_url",
            "webhook_url",
            "application_object_id",
            "action_group_id",
            "allowed_subscriptions",
        ):
            pulumi.export(name, getattr(export, name))

    return program


def _env(app):
    return {e["name"]: e.get("value") for e in app.inputs["template"]["containers"][0]["env"]}


def test_action_group_uses_the_identity_and_the_receiver_url():
    result = declare(_export())
    app = one(result, APPLICATION)
    (webhook,) = one(result, ACTION_GROUP).inputs["webhookReceivers"]
    assert webhook["objectId"] == app.outputs["objectId"] == result.outputs["application_object_id"]
    assert webhook["identifierUri"] in app.inputs["identifierUris"]
    assert webhook["serviceUri"] == result.outputs["receiver_url"] + "/api/alerts" == result.outputs["webhook_url"]
    assert webhook["serviceUri"].startswith("https://")


def test_alert_rules_notify_the_stacks_action_group():
    result = declare(_export())
    group_id = one(result, ACTION_GROUP).outputs["id"]
    assert one(result, METRIC_ALERT).inputs["actions"] == [{"actionGroupId": group_id}]
    assert one(result, LOG_ALERT).inputs["actions"] == {"actionGroups": [group_id]}
    assert result.outputs["action_group_id"] == group_id


# The subscription the offline engine deploys into, which holds the alert rules.
RULES_SUB = FakeCloud("test").subscription_id


def test_receiver_trusts_the_identity_the_watched_subscriptions_and_the_rules_own():
    result = declare(_export())
    app = one(result, APPLICATION)
    env = _env(one(result, CONTAINER_APP))
    assert env["SECURE_EXPORT_AUDIENCES"] == f"{app.inputs['identifierUris'][0]},{app.outputs['clientId']}"
    # an alert's alertId names the rules' subscription: without it every alert could be refused (403)
    expected = [*sorted([SUB_A, SUB_B]), RULES_SUB]
    assert env["SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS"] == ",".join(expected)
    assert result.outputs["allowed_subscriptions"] == expected


def test_configured_subscriptions_replace_the_derived_ones_and_keep_the_rules_own():
    receiver = {
        **ARGS["receiver"],
        "allowed_subscriptions": ["33333333-3333-4333-8333-333333333333", RULES_SUB.upper()],
    }
    env = _env(one(declare(_export(receiver=receiver)), CONTAINER_APP))
    assert env["SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS"] == f"33333333-3333-4333-8333-333333333333,{RULES_SUB.upper()}"


def test_no_rules_and_no_list_leave_every_subscription_allowed():
    result = declare(_export(metric_alerts=None, log_alerts=None))
    assert "SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS" not in _env(one(result, CONTAINER_APP))
    assert result.outputs["allowed_subscriptions"] == []


def test_every_child_is_parented_under_its_component():
    result = declare(_export())
    parents = {r.name: r.parent for r in result.resources}
    assert parents["sx"] is None
    assert {parents[n] for n in ("sx-identity", "sx-receiver", "sx-action-group", "sx-rules")} == {"sx"}
    assert parents["sx-identity-app"] == "sx-identity"
    assert parents["sx-action-group-ag"] == "sx-action-group"
    assert parents["sx-rules-metric-cpu-high"] == "sx-rules"
