"""The deployable program's body: one ``SecureExport`` from a validated config, and its stack outputs."""

from __future__ import annotations

import pulumi

from components.config import StackConfig
from components.secure_export import SecureExport

COMPONENT_NAME = "secure-export"


def declare(config: StackConfig) -> SecureExport:
    """Declare the stack's ``SecureExport`` and export its outputs (camelCase stack outputs)."""
    export = SecureExport(COMPONENT_NAME, config.to_args())  # type: ignore[arg-type]
    pulumi.export("receiverUrl", export.receiver_url)
    pulumi.export("webhookUrl", export.webhook_url)
    pulumi.export("applicationObjectId", export.application_object_id)
    pulumi.export("clientId", export.client_id)
    pulumi.export("identifierUri", export.identifier_uri)
    pulumi.export("tenantId", export.tenant_id)
    pulumi.export("roleId", export.role_id)
    pulumi.export("deployerObjectId", export.deployer_object_id)
    pulumi.export("actionGroupId", export.action_group_id)
    pulumi.export("resourceGroupName", export.resource_group_name)
    pulumi.export("allowedSubscriptions", export.allowed_subscriptions)
    return export
