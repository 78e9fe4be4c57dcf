"""secure-export Pulumi components: reuse them from any Pulumi program.

    from secure_export.components import SecureExport, SecureWebhookIdentity, SecureWebhookActionGroup
    from secure_export.components import AlertRules, ReceiverService

They are also a Pulumi component package (``PulumiPlugin.yaml`` in this directory), so programs in
other languages can use them after ``pulumi package add``.
"""

from secure_export.components.action_group import (
    SecureWebhookActionGroup,
    SecureWebhookActionGroupArgs,
)
from secure_export.components.alert_rules import AlertRules, AlertRulesArgs
from secure_export.components.identity import SecureWebhookIdentity, SecureWebhookIdentityArgs
from secure_export.components.receiver_database import ReceiverDatabase, ReceiverDatabaseArgs
from secure_export.components.receiver_service import ReceiverService, ReceiverServiceArgs
from secure_export.components.secure_export import SecureExport, SecureExportArgs

COMPONENTS = [SecureWebhookIdentity, SecureWebhookActionGroup, AlertRules, ReceiverService, SecureExport]
"""Every public component, in the order the package host registers them."""
PACKAGE_NAME = "secure-export"
"""Name of the component package (the first part of each type token)."""

__all__ = [
    "AlertRules",
    "AlertRulesArgs",
    "COMPONENTS",
    "PACKAGE_NAME",
    "ReceiverDatabase",
    "ReceiverDatabaseArgs",
    "ReceiverService",
    "ReceiverServiceArgs",
    "SecureExport",
    "SecureExportArgs",
    "SecureWebhookActionGroup",
    "SecureWebhookActionGroupArgs",
    "SecureWebhookIdentity",
    "SecureWebhookIdentityArgs",
]
