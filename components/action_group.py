"""``SecureWebhookActionGroup``: an Azure Monitor action group whose webhook is a secure (Azure AD) webhook."""

from typing import NotRequired, TypedDict

import pulumi
from pulumi_azure_native import monitor

from secure_export.contract import ALERTS_PATH
from secure_export.stack.deploy_rules import WEBHOOK_RECEIVER_NAME, action_group_findings, snake_path
from secure_export.stack.validation import check_short_name, checked_tenant_id


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
    application_object_id: pulumi.Input[str]
    """Object id of the receiver's Azure AD application (not its client id)."""
    identifier_uri: pulumi.Input[str]
    """Application ID URI of the receiver's application."""
    tenant_id: pulumi.Input[str]
    """Azure AD tenant of the receiver's application."""
    receiver_base_url: NotRequired[pulumi.Input[str] | None]
    """HTTPS base URL of the bundled receiver, e.g. https://receiver.example.net; /api/alerts is appended. Give this or
    service_uri."""
    service_uri: NotRequired[pulumi.Input[str] | None]
    """Full HTTPS URL the secure webhook posts to, used as is: an ITSM tool's own Secure Export endpoint (ServiceNow
    Event Management, a BMC Helix Integration Studio flow). Give this or receiver_base_url."""
    action_group_name: NotRequired[str | None]
    """Azure name of the action group. Defaults to an auto-generated name."""
    email_receivers: NotRequired[list[EmailReceiverArgs] | None]
    """Optional e-mail receivers notified alongside the ITSM tool."""
    tags: NotRequired[dict[str, str] | None]
    """Tags on the action group."""


def _https_alerts_url(base: str | None) -> str:
    if not isinstance(base, str) or not base.startswith("https://"):
        raise ValueError(f"receiver_base_url must be an https:// URL, got {base!r}")
    return base.rstrip("/") + ALERTS_PATH


def _https_service_uri(uri: str | None) -> str:
    if not isinstance(uri, str) or not uri.startswith("https://"):
        raise ValueError(f"service_uri must be an https:// URL, got {uri!r}")
    return uri


class SecureWebhookActionGroup(pulumi.ComponentResource):
    """Action group with one secure webhook receiver (Azure AD auth, common alert schema) pointing at the receiver's
    /api/alerts or at an ITSM tool's own Secure Export endpoint, plus optional e-mail receivers."""

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
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("secure-export:index:SecureWebhookActionGroup", name, {}, opts)
        try:
            short_name = check_short_name(args.get("short_name"))
        except ValueError as exc:
            raise ValueError(f"SecureWebhookActionGroup {name}: short_name {exc}") from None
        for field in (
            "resource_group_name",
            "application_object_id",
            "identifier_uri",
            "tenant_id",
        ):
            if args.get(field) is None:
                raise ValueError(f"SecureWebhookActionGroup {name}: {field} is required")
        tenant_id = checked_tenant_id(f"SecureWebhookActionGroup {name}", args.get("tenant_id"))
        if (args.get("receiver_base_url") is None) == (args.get("service_uri") is None):
            raise ValueError(
                f"SecureWebhookActionGroup {name}: give exactly one of receiver_base_url (the bundled receiver) "
                "or service_uri (an ITSM tool's own endpoint)"
            )
        if args.get("service_uri") is not None:
            service_uri = pulumi.Output.from_input(args.get("service_uri")).apply(_https_service_uri)
        else:
            service_uri = pulumi.Output.from_input(args.get("receiver_base_url")).apply(_https_alerts_url)
        emails = args.get("email_receivers") or []
        for finding in action_group_findings(emails):
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
