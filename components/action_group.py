"""``SecureWebhookActionGroup``: an Azure Monitor action group whose webhook is a secure (Azure AD) webhook."""

from typing import NotRequired, Optional, TypedDict

import pulumi
from pulumi_azure_native import monitor

from components.deploy_rules import WEBHOOK_RECEIVER_NAME, action_group_findings, snake_path
from components.validation import check_short_name, checked_tenant_id

ALERTS_PATH = "/api/alerts"
"""Path of the receiver's alert endpoint, appended to its base URL."""


class EmailReceiverArgs(TypedDict):
    """An e-mail receiver of the action group."""

    name: str
    """Name of the receiver, unique in the action group."""
    email_address: str
    """Address the alert mail goes to."""


class SecureWebhookActionGroupArgs(TypedDict):
    """Inputs of SecureWebhookActionGroup."""

    resource_group_name: pulumi.Input[str]
    """Resource group that holds the action group."""
    short_name: str
    """Short name shown in SMS and e-mail (1..12 characters)."""
    receiver_base_url: pulumi.Input[str]
    """HTTPS base URL of the receiver, e.g. https://receiver.example.net; /api/alerts is appended."""
    application_object_id: pulumi.Input[str]
    """Object id of the receiver's Azure AD application (not its client id)."""
    identifier_uri: pulumi.Input[str]
    """Application ID URI of the receiver's application."""
    tenant_id: pulumi.Input[str]
    """Azure AD tenant of the receiver's application."""
    action_group_name: NotRequired[Optional[str]]
    """Azure name of the action group. Defaults to an auto-generated name."""
    email_receivers: NotRequired[Optional[list[EmailReceiverArgs]]]
    """Optional e-mail receivers notified alongside the ITSM tool."""
    tags: NotRequired[Optional[dict[str, str]]]
    """Tags on the action group."""


def _https_alerts_url(base: str) -> str:
    if not base.startswith("https://"):
        raise ValueError(f"receiver_base_url must be an https:// URL, got {base!r}")
    return base.rstrip("/") + ALERTS_PATH


class SecureWebhookActionGroup(pulumi.ComponentResource):
    """Action group with one secure webhook receiver (Azure AD auth, common alert schema) pointing at the receiver's /api/alerts, plus optional e-mail receivers."""

    action_group_id: pulumi.Output[str]
    """Azure resource id of the action group, for alert rules' actions."""
    action_group_name: pulumi.Output[str]
    """Azure name of the action group."""
    service_uri: pulumi.Output[str]
    """URL the secure webhook posts alerts to."""

    def __init__(
        self,
        name: str,
        args: SecureWebhookActionGroupArgs,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        super().__init__("secure-export:index:SecureWebhookActionGroup", name, {}, opts)
        try:
            short_name = check_short_name(args.get("short_name"))
        except ValueError as exc:
            raise ValueError(f"SecureWebhookActionGroup {name}: short_name {exc}") from None
        for field in (
            "resource_group_name",
            "receiver_base_url",
            "application_object_id",
            "identifier_uri",
            "tenant_id",
        ):
            if args.get(field) is None:
                raise ValueError(f"SecureWebhookActionGroup {name}: {field} is required")
        tenant_id = checked_tenant_id(f"SecureWebhookActionGroup {name}", args.get("tenant_id"))
        service_uri = pulumi.Output.from_input(args.get("receiver_base_url")).apply(_https_alerts_url)
        emails = args.get("email_receivers") or []
        for finding in action_group_findings(emails):  # type: ignore[arg-type]
            raise ValueError(f"SecureWebhookActionGroup {name}: {snake_path(finding.path)}: {finding.message}")
        action_group = monitor.ActionGroup(
            f"{name}-ag",
            action_group_name=args.get("action_group_name"),
            resource_group_name=args.get("resource_group_name"),
            group_short_name=short_name,
            enabled=True,
            location="Global",
            webhook_receivers=[
                {
                    "name": WEBHOOK_RECEIVER_NAME,
                    "service_uri": service_uri,
                    "use_aad_auth": True,
                    "object_id": args.get("application_object_id"),
                    "identifier_uri": args.get("identifier_uri"),
                    "tenant_id": tenant_id,
                    "use_common_alert_schema": True,
                }
            ],
            email_receivers=[
                {"name": e["name"], "email_address": e["email_address"], "use_common_alert_schema": True}
                for e in emails
            ]
            or None,
            tags=args.get("tags"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.action_group_id = action_group.id
        self.action_group_name = action_group.name
        self.service_uri = service_uri
        self.register_outputs(
            {
                "action_group_id": self.action_group_id,
                "action_group_name": self.action_group_name,
                "service_uri": self.service_uri,
            }
        )
