"""The deployable program's body: one ``SecureExport`` from a validated config, and its stack outputs."""

from __future__ import annotations

import pulumi

from secure_export.components.secure_export import SecureExport
from secure_export.stack.config import StackConfig

COMPONENT_NAME = "secure-export"


def declare(config: StackConfig) -> SecureExport:
    """Declare the stack's ``SecureExport`` and export its outputs (camelCase stack outputs)."""
    export = SecureExport(COMPONENT_NAME, config.to_args())
    if config.direct_endpoint is None:
        pulumi.export("receiverUrl", export.receiver_url)
    else:
        # What the ITSM tool's side is configured with (docs/servicenow-event-management.md, docs/bmc-helix.md).
        pulumi.export("directEndpointTool", export.direct_endpoint_tool)
    pulumi.export("webhookUrl", export.webhook_url)
    pulumi.export("applicationObjectId", export.application_object_id)
    pulumi.export("clientId", export.client_id)
    pulumi.export("identifierUri", export.identifier_uri)
    pulumi.export("tenantId", export.tenant_id)
    pulumi.export("accessTokenVersion", export.access_token_version)
    pulumi.export("roleId", export.role_id)
    pulumi.export("deployerObjectId", export.deployer_object_id)
    pulumi.export("actionGroupId", export.action_group_id)
    pulumi.export("resourceGroupName", export.resource_group_name)
    if config.direct_endpoint is None:
        pulumi.export("allowedSubscriptions", export.allowed_subscriptions)
    return export
