"""The values both halves must agree on: Azure's fixed identities, the app role, severities, ports, paths, variables.

The components configure the receiver with them and the receiver reads them, so each is written once,
here. Standard library only: the receiver's image imports it without pydantic or Pulumi.
"""

from __future__ import annotations

from typing import Final

AZNS_AAD_WEBHOOK_CLIENT_ID: Final = "461e8683-5575-4561-ac7f-899cc907d62a"
"""Client id of Microsoft's first-party *AzNS AAD Webhook* application: the ``appid``/``azp`` of every
token an action group sends (Azure Monitor docs, "Configure secure webhook": "Do not change")."""

SECURE_WEBHOOK_ROLE: Final = "ActionGroupsSecureWebhook"
"""The app role Azure Monitor action groups hold on the receiver's application (the token's ``roles``)."""

SEVERITIES: Final = ("Sev0", "Sev1", "Sev2", "Sev3", "Sev4")
"""Azure Monitor's alert severities, most severe first (common alert schema, ``essentials.severity``)."""

ALERTS_PATH: Final = "/api/alerts"
"""Where the receiver takes alerts (``POST``), appended to the receiver's base URL in the action group."""

RECEIVER_PORT: Final = 8080
"""Port the receiver image listens on (``secure-export serve --host 0.0.0.0 --port 8080``)."""

OPS_PORT: Final = 9090
"""Port of the receiver's operations app (``SECURE_EXPORT_OPS_PORT``), reachable only inside its environment."""

DATA_DIR: Final = "/data"
"""The image's data volume (receiver/Dockerfile ``VOLUME``): the inbox and the embedded backend's database."""

IMAGE_DB_PATH: Final = f"{DATA_DIR}/secure-export.db"
"""The receiver's SQLite database inside the image (the image's ``SECURE_EXPORT_DB``)."""

LOCAL_DB_PATH: Final = "./secure-export.db"
"""The receiver's SQLite database when ``SECURE_EXPORT_DB`` is unset (``secure-export serve`` on a workstation)."""

VARIABLE_PREFIX: Final = "SECURE_EXPORT_"
"""Prefix of every receiver environment variable."""

# The receiver's environment variables that the components set (docs/design.md, "Receiver configuration").
ENV_TENANT_ID: Final = "SECURE_EXPORT_TENANT_ID"
ENV_AUDIENCES: Final = "SECURE_EXPORT_AUDIENCES"
ENV_ALLOWED_CALLERS: Final = "SECURE_EXPORT_ALLOWED_CALLERS"
ENV_ALLOWED_SUBSCRIPTIONS: Final = "SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS"
ENV_DB: Final = "SECURE_EXPORT_DB"
ENV_DB_AUTH: Final = "SECURE_EXPORT_DB_AUTH"
ENV_ITSM: Final = "SECURE_EXPORT_ITSM"
ENV_CORRELATION: Final = "SECURE_EXPORT_CORRELATION"
ENV_ROUTING: Final = "SECURE_EXPORT_ROUTING"
ENV_REOPEN_WINDOW: Final = "SECURE_EXPORT_REOPEN_WINDOW"
ENV_STATELESS_TTL: Final = "SECURE_EXPORT_STATELESS_TTL"
ENV_OPS_PORT: Final = "SECURE_EXPORT_OPS_PORT"
ENV_ITSM_REVISION: Final = "SECURE_EXPORT_ITSM_REVISION"
"""Changes with the ITSM credentials (an HMAC of them), so that rotating them starts a new revision."""
ENV_SERVICENOW_URL: Final = "SECURE_EXPORT_SERVICENOW_URL"
ENV_SERVICENOW_TARGET: Final = "SECURE_EXPORT_SERVICENOW_TARGET"
ENV_SERVICENOW_USERNAME: Final = "SECURE_EXPORT_SERVICENOW_USERNAME"
ENV_SERVICENOW_PASSWORD: Final = "SECURE_EXPORT_SERVICENOW_PASSWORD"
ENV_SERVICENOW_CLIENT_ID: Final = "SECURE_EXPORT_SERVICENOW_CLIENT_ID"
ENV_SERVICENOW_CLIENT_SECRET: Final = "SECURE_EXPORT_SERVICENOW_CLIENT_SECRET"
ENV_BMC_URL: Final = "SECURE_EXPORT_BMC_URL"
ENV_BMC_USERNAME: Final = "SECURE_EXPORT_BMC_USERNAME"
ENV_BMC_PASSWORD: Final = "SECURE_EXPORT_BMC_PASSWORD"
