"""What an ITSM tool's admin enters on their side in direct mode, from the stack outputs.

``secure-export plan`` prints these lines under the outputs when the stack has a
``directEndpoint``; docs/servicenow-event-management.md and docs/bmc-helix.md explain each step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from secure_export.contract import AZNS_AAD_WEBHOOK_CLIENT_ID, SECURE_WEBHOOK_ROLE

LOGIN = "https://login.microsoftonline.com"


def token_facts(outputs: Mapping[str, Any]) -> dict[str, str]:
    """Audience, issuer, caller claim and metadata URL of the tokens Azure Monitor will send.

    The token version of the application decides them (Microsoft identity platform access tokens):
    v2 tokens carry the client id as ``aud`` and the caller in ``azp``; v1 tokens the identifier URI
    and ``appid``.
    """
    tenant = str(outputs.get("tenantId"))
    v2 = str(outputs.get("accessTokenVersion")) == "2"
    return {
        "audience": str(outputs.get("clientId") if v2 else outputs.get("identifierUri")),
        "issuer": f"{LOGIN}/{tenant}/v2.0" if v2 else f"https://sts.windows.net/{tenant}/",
        "metadata": f"{LOGIN}/{tenant}/v2.0/.well-known/openid-configuration"
        if v2
        else f"{LOGIN}/{tenant}/.well-known/openid-configuration",
        "jwks": f"{LOGIN}/{tenant}/discovery/v2.0/keys",
        "caller_claim": "azp" if v2 else "appid",
        "version": "2" if v2 else "1",
    }


def tool_side_lines(outputs: Mapping[str, Any]) -> list[str]:
    """The "configure on the tool's side" block for a direct-mode stack; empty for a receiver stack."""
    tool = outputs.get("directEndpointTool")
    if not tool:
        return []
    facts = token_facts(outputs)
    tenant, client_id = outputs.get("tenantId"), outputs.get("clientId")
    if tool == "servicenow-em":
        kind = "client id: v2 tokens" if facts["version"] == "2" else "identifier URI: v1 tokens"
        claim = "" if facts["version"] == "2" else "; change the claim name azp to appid"
        return [
            "configure on the ServiceNow side (docs/servicenow-event-management.md):",
            "  1. install the Event Management Connectors app (sn_em_connector); run Azure Cloud Discovery so that",
            "     events bind to CIs",
            f"  2. integration user with role evt_mgmt_integration, Source field: {facts['audience']}  ({kind})",
            "  3. Event Management > Integrations > Azure OAuth Config > Azure OAuth OIDC Entry,",
            f"     Client ID: {facts['audience']}",
            f"  4. its OIDC Provider Configuration, OIDC Metadata URL: {facts['metadata']}{claim}",
            f"  5. claim value {facts['caller_claim']} = {AZNS_AAD_WEBHOOK_CLIENT_ID} (Azure's AzNS AAD Webhook app)",
        ]
    if tool == "bmc-helix":
        return [
            "configure on the BMC Helix side (docs/bmc-helix.md):",
            '  Integration Studio flow "Create Incident from Azure Alerts", its connector configuration:',
            f"    Azure tenant ID: {tenant}",
            f"    Application ID:  {client_id}",
            f"  the flow's URL is the webhook URL: {outputs.get('webhookUrl')}",
        ]
    return [
        "configure on the receiving side: accept only these tokens (RS256):",
        f"  issuer {facts['issuer']}, audience {facts['audience']}",
        f"  signing keys {facts['jwks']}",
        f"  roles contains {SECURE_WEBHOOK_ROLE}; {facts['caller_claim']} = {AZNS_AAD_WEBHOOK_CLIENT_ID}",
    ]
