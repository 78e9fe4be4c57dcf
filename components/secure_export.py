"""``SecureExport``: the whole secure export path, wired: identity, receiver, action group and alert rules."""

from typing import NotRequired, TypedDict

import pulumi
from pulumi_azure_native import authorization, resources

from secure_export.components.action_group import EmailReceiverArgs, SecureWebhookActionGroup
from secure_export.components.alert_rules import (
    ActivityLogAlertRuleArgs,
    AlertRules,
    LogAlertRuleArgs,
    MetricAlertRuleArgs,
    watched_subscriptions,
)
from secure_export.components.identity import SecureWebhookIdentity
from secure_export.components.receiver_database import DatabaseSettings
from secure_export.components.receiver_service import ReceiverService


class ReceiverSettingsArgs(TypedDict):
    """How the receiver runs: image, ITSM backend, sizing."""

    image_registry: str
    """Registry login server, e.g. ghcr.io or myregistry.azurecr.io."""
    image_repository: str
    """Repository in the registry."""
    image_tag: NotRequired[str | None]
    """Image tag; give this or image_digest."""
    image_digest: NotRequired[str | None]
    """Image digest (sha256:...); give this or image_tag."""
    registry_resource_id: NotRequired[str | None]
    """Azure Container Registry to pull from with a managed identity. Unset: a public image."""
    container_app_name: NotRequired[str | None]
    """Azure name of the container app."""
    allowed_callers: NotRequired[list[str] | None]
    """Accepted appid/azp claims (default: the AzNS AAD Webhook client id)."""
    allowed_subscriptions: NotRequired[list[str] | None]
    """Subscriptions whose alerts are accepted. Unset: those the alert rules watch. The rules' own subscription is
    added."""
    itsm: NotRequired[str | None]
    """ITSM backend: embedded (default), servicenow or bmc-helix."""
    correlation: NotRequired[str | None]
    """Work item correlation: alert (default) or rule-target."""
    servicenow_url: NotRequired[str | None]
    """ServiceNow instance URL."""
    servicenow_target: NotRequired[str | None]
    """ServiceNow table: incident (default) or event."""
    bmc_url: NotRequired[str | None]
    """BMC Helix AR System REST base URL (with itsm bmc-helix)."""
    cpu: NotRequired[float | None]
    """vCPU per replica (default 0.5)."""
    memory: NotRequired[str | None]
    """Memory per replica (default 1Gi)."""
    min_replicas: NotRequired[int | None]
    """Minimum replicas (default 1)."""
    max_replicas: NotRequired[int | None]
    """Maximum replicas (default 1)."""
    concurrent_requests: NotRequired[int | None]
    """Concurrent requests per replica before scaling out (default 50)."""
    log_retention_days: NotRequired[int | None]
    """Log Analytics retention in days (default 30)."""
    routing: NotRequired[str | None]
    """Routing file as JSON text (docs/routing.md), checked with secure_export.routing; the container reads it
    from a file mounted from a container-app secret (SECURE_EXPORT_ROUTING). Unset: every item to the default."""
    reopen_window: NotRequired[str | None]
    """SECURE_EXPORT_REOPEN_WINDOW: seconds or ISO 8601 duration (receiver default PT1H)."""
    stateless_ttl: NotRequired[str | None]
    """SECURE_EXPORT_STATELESS_TTL: resolve items of alerts Azure never resolves after this long (default off)."""
    database: NotRequired[DatabaseSettings | None]
    """The inbox's database: sqlite (default, one replica) or postgresql (a flexible server, several replicas)."""
    operator_emails: NotRequired[list[str] | None]
    """E-mail addresses alerted when the receiver itself needs attention (rules in docs/operations.md)."""
    no_delivery_window: NotRequired[str | None]
    """Window of the "alerts sent, none delivered" rule (default PT1H)."""
    refused_token_threshold: NotRequired[int | None]
    """Refused tokens within 5 minutes that alert the operators (default 20)."""


DIRECT_TOOLS = ("servicenow-em", "bmc-helix", "other")
"""ITSM tools whose own Secure Export endpoint the action groups can post to (docs/servicenow-event-management.md,
docs/bmc-helix.md)."""


class DirectEndpointArgs(TypedDict):
    """An ITSM tool's own Secure Export endpoint: no receiver is deployed, the tool checks the token itself."""

    tool: str
    """servicenow-em (Event Management's inbound-event API), bmc-helix (an Integration Studio flow) or other."""
    url: str
    """HTTPS URL the action groups post to, used as is."""


class SecureExportArgs(TypedDict):
    """Inputs of SecureExport."""

    location: str
    """Azure region of the receiver and of log search rules."""
    resource_group_name: str
    """Resource group for the receiver, the action group and the rules."""
    action_group_short_name: str
    """Action group short name (1..12 characters)."""
    receiver: NotRequired[ReceiverSettingsArgs | None]
    """How the bundled receiver runs; give this or direct_endpoint."""
    direct_endpoint: NotRequired[DirectEndpointArgs | None]
    """Post straight to an ITSM tool's own Secure Export endpoint instead of deploying the receiver; give this or
    receiver."""
    create_resource_group: NotRequired[bool | None]
    """Create the resource group (default true)."""
    display_name: NotRequired[str | None]
    """Display name of the Azure AD application (default: secure-export <project>-<stack>)."""
    identifier_uri: NotRequired[str | None]
    """Application ID URI (default api://<tenant id>/<project>-<stack>)."""
    access_token_version: NotRequired[int | None]
    """Token version the application accepts: 1 (default) or 2."""
    owner_object_ids: NotRequired[list[str] | None]
    """Extra owners of the application besides the deployer."""
    action_group_name: NotRequired[str | None]
    """Azure name of the action group."""
    email_receivers: NotRequired[list[EmailReceiverArgs] | None]
    """E-mail receivers notified alongside the ITSM tool."""
    servicenow_username: NotRequired[pulumi.Input[str] | None]
    """ServiceNow user (basic auth)."""
    servicenow_password: NotRequired[pulumi.Input[str] | None]
    """ServiceNow password (a Pulumi secret)."""
    servicenow_client_id: NotRequired[pulumi.Input[str] | None]
    """ServiceNow OAuth client id."""
    servicenow_client_secret: NotRequired[pulumi.Input[str] | None]
    """ServiceNow OAuth client secret (a Pulumi secret)."""
    bmc_username: NotRequired[pulumi.Input[str] | None]
    """BMC Helix user (with itsm bmc-helix)."""
    bmc_password: NotRequired[pulumi.Input[str] | None]
    """BMC Helix password (a Pulumi secret)."""
    metric_alerts: NotRequired[list[MetricAlertRuleArgs] | None]
    """Metric alert rules."""
    log_alerts: NotRequired[list[LogAlertRuleArgs] | None]
    """Log search alert rules."""
    activity_log_alerts: NotRequired[list[ActivityLogAlertRuleArgs] | None]
    """Activity log alert rules."""
    tags: NotRequired[dict[str, str] | None]
    """Tags on every Azure resource."""


class SecureExport(pulumi.ComponentResource):
    """Secure export from Azure Monitor to an ITSM tool: the Azure AD application and role, the receiver on Container
    Apps (trusting that application) or the tool's own Secure Export endpoint, a secure-webhook action group
    pointing there, and alert rules notifying the action group."""

    receiver_url: pulumi.Output[str | None]
    """HTTPS base URL of the receiver (none in direct mode)."""
    webhook_url: pulumi.Output[str]
    """URL the action group posts alerts to."""
    application_object_id: pulumi.Output[str]
    """Object id of the receiver's Azure AD application."""
    client_id: pulumi.Output[str]
    """Client id of the receiver's Azure AD application."""
    identifier_uri: pulumi.Output[str]
    """Application ID URI of the receiver's Azure AD application."""
    tenant_id: pulumi.Output[str]
    """Azure AD tenant."""
    access_token_version: pulumi.Output[int]
    """Access token version the application accepts (1 or 2)."""
    direct_endpoint_tool: pulumi.Output[str | None]
    """In direct mode, the ITSM tool the action group posts to (servicenow-em, bmc-helix, other); none with the
    receiver."""
    role_id: pulumi.Output[str]
    """Id of the ActionGroupsSecureWebhook app role."""
    deployer_object_id: pulumi.Output[str]
    """Object id of the deploying identity (an owner of the application)."""
    action_group_id: pulumi.Output[str]
    """Resource id of the action group."""
    resource_group_name: pulumi.Output[str]
    """Resource group of the receiver, action group and rules."""
    allowed_subscriptions: pulumi.Output[list[str]]
    """Subscriptions whose alerts the receiver accepts (empty: all); includes the one holding the alert rules."""

    def __init__(self, name: str, args: SecureExportArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("secure-export:index:SecureExport", name, {}, opts)
        receiver_settings = dict(args.get("receiver") or {})
        direct = args.get("direct_endpoint")
        if bool(receiver_settings) == bool(direct):
            raise ValueError(f"SecureExport {name}: give exactly one of receiver or direct_endpoint")
        if direct and direct.get("tool") not in DIRECT_TOOLS:
            raise ValueError(
                f"SecureExport {name}: direct_endpoint.tool must be one of {', '.join(DIRECT_TOOLS)}, "
                f"got {direct.get('tool')!r}"
            )
        child = pulumi.ResourceOptions(parent=self)
        project, stack = pulumi.get_project(), pulumi.get_stack()

        identity = SecureWebhookIdentity(
            f"{name}-identity",
            {
                "display_name": args.get("display_name") or f"secure-export {project}-{stack}",
                "identifier_uri": args.get("identifier_uri"),
                "access_token_version": args.get("access_token_version"),
                "owner_object_ids": args.get("owner_object_ids"),
            },
            opts=child,
        )

        listed: list[str] | None = receiver_settings.pop("allowed_subscriptions", None)  # type: ignore[assignment]  # a dict copy: values are object
        if listed is None:
            listed = watched_subscriptions(
                args.get("metric_alerts"), args.get("log_alerts"), args.get("activity_log_alerts")
            )
        receiver_url: pulumi.Output[str | None]
        webhook: dict[str, pulumi.Input[str]]
        allowed_subscriptions: pulumi.Input[list[str]]
        if direct:
            # Direct mode: the tool checks the token itself; only the resource group for the action
            # group and the rules is needed here.
            rg_name: pulumi.Input[str] = args["resource_group_name"]
            if args.get("create_resource_group", True) is not False:
                rg_name = resources.ResourceGroup(
                    f"{name}-rg",
                    resource_group_name=args["resource_group_name"],
                    location=args["location"],
                    tags=args.get("tags"),
                    opts=child,
                ).name
            resource_group_name = pulumi.Output.from_input(rg_name)
            receiver_url = pulumi.Output.from_input(None)
            webhook = {"service_uri": direct["url"]}
            allowed_subscriptions = []
        else:
            allowed_subscriptions = self._with_rules_subscription(listed)
            receiver = ReceiverService(
                f"{name}-receiver",
                {
                    # The receiver settings are a subset of ReceiverServiceArgs' keys; their copy is dict[str, object].
                    **receiver_settings,  # type: ignore[typeddict-item]
                    "location": args["location"],
                    "resource_group_name": args["resource_group_name"],
                    "create_resource_group": args.get("create_resource_group"),
                    "tenant_id": identity.tenant_id,
                    "audiences": [identity.identifier_uri, identity.client_id],
                    "allowed_subscriptions": allowed_subscriptions,
                    "servicenow_username": args.get("servicenow_username"),
                    "servicenow_password": args.get("servicenow_password"),
                    "servicenow_client_id": args.get("servicenow_client_id"),
                    "servicenow_client_secret": args.get("servicenow_client_secret"),
                    "bmc_username": args.get("bmc_username"),
                    "bmc_password": args.get("bmc_password"),
                    "tags": args.get("tags"),
                },
                opts=child,
            )
            resource_group_name = receiver.resource_group_name
            receiver_url = receiver.url
            webhook = {"receiver_base_url": receiver.url}

        action_group = SecureWebhookActionGroup(
            f"{name}-action-group",
            {
                "resource_group_name": resource_group_name,
                "short_name": args.get("action_group_short_name"),
                "action_group_name": args.get("action_group_name"),
                **webhook,  # type: ignore[typeddict-item]  # receiver_base_url or service_uri: one key, chosen above
                "application_object_id": identity.application_object_id,
                "identifier_uri": identity.identifier_uri,
                "tenant_id": identity.tenant_id,
                "email_receivers": args.get("email_receivers"),
                "tags": args.get("tags"),
            },
            opts=child,
        )

        AlertRules(
            f"{name}-rules",
            {
                "resource_group_name": resource_group_name,
                "action_group_id": action_group.action_group_id,
                "location": args["location"],
                "metric_alerts": args.get("metric_alerts"),
                "log_alerts": args.get("log_alerts"),
                "activity_log_alerts": args.get("activity_log_alerts"),
                "tags": args.get("tags"),
            },
            opts=child,
        )

        self.receiver_url = receiver_url
        self.webhook_url = action_group.service_uri
        self.application_object_id = identity.application_object_id
        self.client_id = identity.client_id
        self.identifier_uri = identity.identifier_uri
        self.tenant_id = identity.tenant_id
        self.access_token_version = identity.access_token_version
        self.direct_endpoint_tool = pulumi.Output.from_input(direct["tool"] if direct else None)
        self.role_id = identity.role_id
        self.deployer_object_id = identity.deployer_object_id
        self.action_group_id = action_group.action_group_id
        self.resource_group_name = resource_group_name
        self.allowed_subscriptions = pulumi.Output.from_input(allowed_subscriptions)
        self.register_outputs(
            {
                "receiver_url": self.receiver_url,
                "webhook_url": self.webhook_url,
                "application_object_id": self.application_object_id,
                "client_id": self.client_id,
                "identifier_uri": self.identifier_uri,
                "tenant_id": self.tenant_id,
                "access_token_version": self.access_token_version,
                "direct_endpoint_tool": self.direct_endpoint_tool,
                "role_id": self.role_id,
                "deployer_object_id": self.deployer_object_id,
                "action_group_id": self.action_group_id,
                "resource_group_name": self.resource_group_name,
                "allowed_subscriptions": self.allowed_subscriptions,
            }
        )

    def _with_rules_subscription(self, listed: list[str]) -> pulumi.Input[list[str]]:
        """``listed`` plus the subscription that holds the alert rules, once an allow-list is in effect.

        An alert's ``alertId`` names the subscription of the rule that fired it
        (``/subscriptions/<rules' subscription>/providers/Microsoft.AlertsManagement/alerts/...``), and
        the receiver admits an alert only if every subscription it names is allowed: without this,
        every alert of the stack could be refused with 403. An empty list stays empty (all allowed).
        """
        if not listed:
            return []
        deployer = authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))

        def merged(rules_subscription: str) -> list[str]:
            known = {s.lower() for s in listed}
            return [*listed, *([] if rules_subscription.lower() in known else [rules_subscription.lower()])]

        return deployer.subscription_id.apply(merged)
