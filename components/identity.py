"""``SecureWebhookIdentity``: the Azure AD application an Azure Monitor secure webhook authenticates against."""

# No `from __future__ import annotations`: Pulumi's schema analyzer reads the real annotations.
from typing import NotRequired, TypedDict

import pulumi
import pulumi_azuread as azuread

from secure_export.contract import AZNS_AAD_WEBHOOK_CLIENT_ID, SECURE_WEBHOOK_ROLE
from secure_export.stack.validation import stable_role_id


class SecureWebhookIdentityArgs(TypedDict):
    """Inputs of SecureWebhookIdentity."""

    display_name: str
    """Display name of the receiver's application registration."""
    identifier_uri: NotRequired[str | None]
    """Application ID URI (the token audience). Defaults to api://<tenant id>/<project>-<stack>."""
    access_token_version: NotRequired[int | None]
    """Access token version the application accepts: 1 (default) or 2."""
    owner_object_ids: NotRequired[list[str] | None]
    """Extra owners of the application besides the deploying identity (object ids)."""
    role_id: NotRequired[str | None]
    """Id (UUID) of the ActionGroupsSecureWebhook app role. Defaults to one derived from project and stack, stable
    across runs."""


class SecureWebhookIdentity(pulumi.ComponentResource):
    """Azure AD application with the ActionGroupsSecureWebhook app role, its service principal, and the role granted to
    Microsoft's AzNS AAD Webhook service principal so that Azure Monitor action groups can call the receiver."""

    application_object_id: pulumi.Output[str]
    """Object id of the application: what an action group's secure webhook receiver names as objectId."""
    client_id: pulumi.Output[str]
    """Application (client) id: the token audience for v2 tokens."""
    identifier_uri: pulumi.Output[str]
    """Application ID URI: the token audience for v1 tokens."""
    tenant_id: pulumi.Output[str]
    """Azure AD tenant that issues the tokens."""
    access_token_version: pulumi.Output[int]
    """Access token version the application accepts (1 or 2): which audience, issuer and caller claim a token
    carries."""
    role_id: pulumi.Output[str]
    """Id of the ActionGroupsSecureWebhook app role."""
    service_principal_object_id: pulumi.Output[str]
    """Object id of the application's service principal."""
    deployer_object_id: pulumi.Output[str]
    """Object id of the identity that ran the deployment (an owner of the application)."""

    def __init__(
        self,
        name: str,
        args: SecureWebhookIdentityArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("secure-export:index:SecureWebhookIdentity", name, {}, opts)
        display_name = args.get("display_name")
        if not display_name:
            raise ValueError(f"SecureWebhookIdentity {name}: display_name is required")
        version = args.get("access_token_version") or 1
        if version not in (1, 2):
            raise ValueError(f"SecureWebhookIdentity {name}: access_token_version must be 1 or 2, got {version!r}")
        project, stack = pulumi.get_project(), pulumi.get_stack()
        role_id = args.get("role_id") or stable_role_id(project, stack)
        child = pulumi.ResourceOptions(parent=self)

        deployer = azuread.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
        # The default carries the tenant id, so tenants that refuse identifier URIs without a unique
        # tenant identifier (uriAdditionWithoutUniqueTenantIdentifier) accept it too.
        identifier_uri: pulumi.Input[str] = args.get("identifier_uri") or deployer.tenant_id.apply(
            lambda tenant: f"api://{tenant}/{project}-{stack}"
        )
        # Azure refuses an action group whose creator does not own the application
        # (AadWebhookResourceNotOwnedByCaller), and the azuread provider drops the creator from
        # the owners when owners are set without it: list the deployer explicitly.
        owners = pulumi.Output.all(deployer.object_id, args.get("owner_object_ids") or []).apply(
            lambda values: [values[0], *[o for o in values[1] if o != values[0]]]
        )
        application = azuread.Application(
            f"{name}-app",
            display_name=display_name,
            identifier_uris=[identifier_uri],
            owners=owners,
            sign_in_audience="AzureADMyOrg",
            api=azuread.ApplicationApiArgs(requested_access_token_version=version),
            app_roles=[
                azuread.ApplicationAppRoleArgs(
                    id=role_id,
                    value=SECURE_WEBHOOK_ROLE,
                    display_name=SECURE_WEBHOOK_ROLE,
                    description="Azure Monitor action groups may deliver alerts to the receiver",
                    allowed_member_types=["Application"],
                    enabled=True,
                )
            ],
            opts=child,
        )
        service_principal = azuread.ServicePrincipal(
            f"{name}-sp",
            client_id=application.client_id,
            app_role_assignment_required=True,
            owners=owners,
            opts=child,
        )
        # The first-party SP exists in most tenants already; use_existing adopts it instead of failing.
        azns = azuread.ServicePrincipal(
            f"{name}-azns-sp",
            client_id=AZNS_AAD_WEBHOOK_CLIENT_ID,
            use_existing=True,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        azuread.AppRoleAssignment(
            f"{name}-azns-role",
            app_role_id=role_id,
            principal_object_id=azns.object_id,
            resource_object_id=service_principal.object_id,
            opts=child,
        )

        self.application_object_id = application.object_id
        self.client_id = application.client_id
        self.identifier_uri = pulumi.Output.from_input(identifier_uri)
        self.tenant_id = deployer.tenant_id
        self.access_token_version = pulumi.Output.from_input(version)
        self.role_id = pulumi.Output.from_input(role_id)
        self.service_principal_object_id = service_principal.object_id
        self.deployer_object_id = deployer.object_id
        self.register_outputs(
            {
                "application_object_id": self.application_object_id,
                "client_id": self.client_id,
                "identifier_uri": self.identifier_uri,
                "tenant_id": self.tenant_id,
                "access_token_version": self.access_token_version,
                "role_id": self.role_id,
                "service_principal_object_id": self.service_principal_object_id,
                "deployer_object_id": self.deployer_object_id,
            }
        )
