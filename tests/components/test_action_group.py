import pulumi
import pytest

from secure_export.components import SecureWebhookActionGroup
from tests.support.plans import ACTION_GROUP, declare, one

TENANT = "0b6f4c1e-3d2a-4f5b-8c9d-7e6f5a4b3c2d"

BASE = {
    "resource_group_name": "rg",
    "short_name": "sx-test",
    "receiver_base_url": "https://rx.example.net",
    "application_object_id": "app-object-id",
    "identifier_uri": "api://rx",
    "tenant_id": TENANT,
}


def _group(**overrides):
    def program():
        group = SecureWebhookActionGroup("ag", {**BASE, **overrides})
        pulumi.export("id", group.action_group_id)
        pulumi.export("serviceUri", group.service_uri)

    return program


def test_webhook_receiver_is_a_secure_webhook_with_the_common_schema():
    result = declare(_group())
    group = one(result, ACTION_GROUP)
    (receiver,) = group.inputs["webhookReceivers"]
    assert receiver["useAadAuth"] is True
    assert receiver["useCommonAlertSchema"] is True
    assert receiver["objectId"] == "app-object-id"
    assert receiver["identifierUri"] == "api://rx"
    assert receiver["tenantId"] == TENANT
    assert receiver["serviceUri"] == "https://rx.example.net/api/alerts"
    assert result.outputs["serviceUri"] == receiver["serviceUri"]
    assert result.outputs["id"] == group.outputs["id"]


def test_group_is_global_enabled_and_takes_the_short_name():
    group = one(declare(_group(short_name="twelve-chars")), ACTION_GROUP)
    assert group.inputs["groupShortName"] == "twelve-chars"
    assert group.inputs["enabled"] is True
    assert group.inputs["location"] == "Global"


@pytest.mark.parametrize("short_name", ["", "thirteen-char", None])
def test_short_name_must_have_1_to_12_characters(short_name):
    with pytest.raises(ValueError, match="short_name must be 1..12 characters"):
        declare(_group(short_name=short_name))


def test_receiver_url_must_be_https():
    with pytest.raises(ValueError, match="https"):
        declare(_group(receiver_base_url="http://rx.example.net"))


def test_email_receivers_are_added_next_to_the_webhook():
    group = one(
        declare(_group(email_receivers=[{"name": "oncall", "email_address": "oncall@example.com"}])), ACTION_GROUP
    )
    assert group.inputs["emailReceivers"] == [
        {"name": "oncall", "emailAddress": "oncall@example.com", "useCommonAlertSchema": True}
    ]
    assert len(group.inputs["webhookReceivers"]) == 1


@pytest.mark.parametrize("tenant", ["contoso.onmicrosoft.com", "tenant-id"])
def test_tenant_must_be_a_guid(tenant):
    with pytest.raises(ValueError, match="SecureWebhookActionGroup .*tenant_id must be the Directory \\(tenant\\) ID"):
        declare(_group(tenant_id=tenant))


def test_tenant_known_only_at_deployment_is_checked_once_known():
    with pytest.raises(Exception, match="SecureWebhookActionGroup .*tenant_id must be the Directory \\(tenant\\) ID"):
        declare(_group(tenant_id=pulumi.Output.from_input("tenant-id")))
