"""The comparison programs: the stack's resources declared directly with the providers, no components.

``plain_program`` is the literal baseline (N ``MetricAlert`` resources only); ``plain_full_program``
the like-for-like one (every resource the stack declares). Why two: docs/benchmarks.md, "How the
program cost is measured"; tests/bench/test_plain_programs.py keeps both in step with the stack.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

from secure_export.contract import AZNS_AAD_WEBHOOK_CLIENT_ID, SECURE_WEBHOOK_ROLE

SUBSCRIPTION = "00000000-0000-4000-8000-00000000b0b0"
RESOURCE_GROUP = "rg-bench"
LOCATION = "westeurope"
ACTION_GROUP_SHORT_NAME = "sx-bench"
IMAGE_REGISTRY, IMAGE_REPOSITORY, IMAGE_TAG = "ghcr.io", "example-org/secure-export", "0.1.0"
IMAGE = f"{IMAGE_REGISTRY}/{IMAGE_REPOSITORY}:{IMAGE_TAG}"
ACTION_GROUP_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/microsoft.insights/actionGroups/ag-bench"
)
# The stack's logical names. The offline engine makes up ids from type and name, so the same names
# give the same ids, and every input can be compared with the stack's exactly.
STACK_NAME = "secure-export"


def vm_id(index: int) -> str:
    """Resource id of the ``index``-th watched virtual machine."""
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
        f"/providers/Microsoft.Compute/virtualMachines/vm-{index:05d}"
    )


def _metric_alert(monitor: Any, logical_name: str, index: int, resource_group_name: Any, action_group_id: Any) -> Any:
    """One generated rule as a ``MetricAlert``: the inputs ``AlertRules`` gives it."""
    name = f"cpu-high-{index:05d}"
    return monitor.MetricAlert(
        logical_name,
        rule_name=name,
        resource_group_name=resource_group_name,
        location="global",
        description=f"CPU above 90% on vm-{index:05d}",
        severity=index % 5,
        enabled=True,
        scopes=[vm_id(index)],
        evaluation_frequency="PT1M",
        window_size="PT5M",
        # Args classes, not dicts: criteria are a union of types, and only a typed value tells the
        # SDK to send camelCase names (a dict would go out as odata_type/all_of, which Azure refuses).
        criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
            odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
            all_of=[
                monitor.MetricCriteriaArgs(
                    criterion_type="StaticThresholdCriterion",
                    name="Percentage CPU",
                    metric_name="Percentage CPU",
                    metric_namespace="Microsoft.Compute/virtualMachines",
                    operator="GreaterThan",
                    threshold=90.0,
                    time_aggregation="Average",
                )
            ],
        ),
        auto_mitigate=True,
        actions=[monitor.MetricAlertActionArgs(action_group_id=action_group_id)],
    )


def plain_program(rules: int) -> Callable[[], None]:
    """A Pulumi program (a callable) declaring ``rules`` metric alerts directly, and nothing else."""

    def program() -> None:
        import pulumi
        from pulumi_azure_native import monitor

        for index in range(rules):
            _metric_alert(monitor, f"metric-cpu-high-{index:05d}", index, RESOURCE_GROUP, ACTION_GROUP_ID)
        pulumi.export("metric_alert_count", rules)

    return program


def plain_full_program(rules: int) -> Callable[[], None]:
    """A Pulumi program declaring everything the bench stack declares, with ``rules`` metric alerts, directly.

    The same resource types, names and inputs as ``plan --stack bench`` with the generated
    config, and the same stack outputs; no component resources, no config file, no validation.
    """

    def program() -> None:
        import pulumi
        import pulumi_azuread as azuread
        from pulumi_azure_native import app, authorization, monitor, operationalinsights, resources, storage

        project, stack = pulumi.get_project(), pulumi.get_stack()
        identity, receiver = f"{STACK_NAME}-identity", f"{STACK_NAME}-receiver"
        role_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"secure-export/{project}/{stack}/{SECURE_WEBHOOK_ROLE}"))
        token_version = 1

        # Azure AD: the receiver's application and service principal, the role for AzNS.
        deployer = azuread.get_client_config_output()
        identifier_uri = deployer.tenant_id.apply(lambda tenant: f"api://{tenant}/{project}-{stack}")
        # The rules' own subscription joins the allow-list: alert ids name it.
        rules_subscription = authorization.get_client_config_output().subscription_id
        allowed_subscriptions = rules_subscription.apply(lambda sub: [SUBSCRIPTION, sub.lower()])
        owners = [deployer.object_id]
        application = azuread.Application(
            f"{identity}-app",
            display_name=f"secure-export {project}-{stack}",
            identifier_uris=[identifier_uri],
            owners=owners,
            sign_in_audience="AzureADMyOrg",
            api=azuread.ApplicationApiArgs(requested_access_token_version=token_version),
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
        )
        service_principal = azuread.ServicePrincipal(
            f"{identity}-sp", client_id=application.client_id, app_role_assignment_required=True, owners=owners
        )
        azns = azuread.ServicePrincipal(
            f"{identity}-azns-sp",
            client_id=AZNS_AAD_WEBHOOK_CLIENT_ID,
            use_existing=True,
            opts=pulumi.ResourceOptions(retain_on_delete=True),
        )
        azuread.AppRoleAssignment(
            f"{identity}-azns-role",
            app_role_id=role_id,
            principal_object_id=azns.object_id,
            resource_object_id=service_principal.object_id,
        )

        # The receiver on Container Apps, its logs and its inbox share.
        group = resources.ResourceGroup(f"{receiver}-rg", resource_group_name=RESOURCE_GROUP, location=LOCATION)
        workspace = operationalinsights.Workspace(
            f"{receiver}-logs",
            resource_group_name=group.name,
            location=LOCATION,
            sku={"name": "PerGB2018"},
            retention_in_days=30,
        )
        workspace_keys = operationalinsights.get_shared_keys_output(
            resource_group_name=group.name, workspace_name=workspace.name
        )
        environment = app.ManagedEnvironment(
            f"{receiver}-env",
            resource_group_name=group.name,
            location=LOCATION,
            app_logs_configuration={
                "destination": "log-analytics",
                "log_analytics_configuration": {
                    "customer_id": workspace.customer_id,
                    "shared_key": pulumi.Output.secret(workspace_keys.primary_shared_key),
                },
            },
        )
        account = storage.StorageAccount(
            f"{receiver}-inbox-storage",
            account_name="sx" + hashlib.sha256(f"{project}/{stack}/{receiver}".encode()).hexdigest()[:20],
            resource_group_name=group.name,
            location=LOCATION,
            kind="StorageV2",
            sku={"name": "Standard_LRS"},
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            allow_blob_public_access=False,
        )
        share = storage.FileShare(
            f"{receiver}-inbox-share",
            account_name=account.name,
            resource_group_name=group.name,
            share_name="inbox",
            share_quota=5,
        )
        account_keys = storage.list_storage_account_keys_output(
            account_name=account.name, resource_group_name=group.name
        )
        mount = app.ManagedEnvironmentsStorage(
            f"{receiver}-inbox-mount",
            environment_name=environment.name,
            resource_group_name=group.name,
            storage_name="inbox",
            properties={
                "azure_file": {
                    "account_name": account.name,
                    "account_key": pulumi.Output.secret(account_keys.keys[0].value),
                    "share_name": share.name,
                    "access_mode": "ReadWrite",
                }
            },
        )
        app.ContainerApp(
            f"{receiver}-app",
            container_app_name=receiver,
            resource_group_name=group.name,
            location=LOCATION,
            managed_environment_id=environment.id,
            configuration={
                "active_revisions_mode": "Single",
                "ingress": {
                    "external": True,
                    "allow_insecure": False,
                    "target_port": 8080,
                    "transport": "auto",
                    "additional_port_mappings": [{"external": False, "target_port": 9090, "exposed_port": 9090}],
                },
            },
            template={
                "containers": [
                    {
                        "name": "receiver",
                        "image": IMAGE,
                        "command": ["secure-export"],
                        "args": ["serve", "--host", "0.0.0.0", "--port", "8080"],
                        "env": [
                            {"name": "SECURE_EXPORT_OPS_PORT", "value": "9090"},
                            {"name": "SECURE_EXPORT_TENANT_ID", "value": deployer.tenant_id},
                            {
                                "name": "SECURE_EXPORT_AUDIENCES",
                                "value": pulumi.Output.concat(identifier_uri, ",", application.client_id),
                            },
                            {"name": "SECURE_EXPORT_DB", "value": "/data/secure-export.db"},
                            {"name": "SECURE_EXPORT_ITSM", "value": "embedded"},
                            {"name": "SECURE_EXPORT_CORRELATION", "value": "alert"},
                            {
                                "name": "SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS",
                                "value": allowed_subscriptions.apply(",".join),
                            },
                        ],
                        "resources": {"cpu": 0.5, "memory": "1Gi"},
                        "probes": [
                            {
                                "type": "Liveness",
                                "http_get": {"path": "/healthz", "port": 8080},
                                "period_seconds": 10,
                                "failure_threshold": 3,
                            },
                            {
                                "type": "Readiness",
                                "http_get": {"path": "/readyz", "port": 8080},
                                "period_seconds": 5,
                                "failure_threshold": 3,
                            },
                        ],
                        "volume_mounts": [{"volume_name": "inbox", "mount_path": "/data"}],
                    }
                ],
                "scale": {
                    "min_replicas": 1,
                    "max_replicas": 1,
                    "rules": [{"name": "http", "http": {"metadata": {"concurrentRequests": "50"}}}],
                },
                "volumes": [
                    {
                        "name": "inbox",
                        "storage_type": "AzureFile",
                        "storage_name": mount.name,
                        "mount_options": "uid=10001,gid=10001,dir_mode=0700,file_mode=0600,nobrl,mfsymlinks",
                    }
                ],
            },
        )
        receiver_url = environment.default_domain.apply(lambda domain: f"https://{receiver}.{domain}")
        webhook_url = receiver_url.apply(lambda url: f"{url}/api/alerts")

        # The secure-webhook action group every rule notifies.
        action_group = monitor.ActionGroup(
            f"{STACK_NAME}-action-group-ag",
            resource_group_name=group.name,
            group_short_name=ACTION_GROUP_SHORT_NAME,
            enabled=True,
            location="Global",
            webhook_receivers=[
                {
                    "name": "secure-export",
                    "service_uri": webhook_url,
                    "use_aad_auth": True,
                    "object_id": application.object_id,
                    "identifier_uri": identifier_uri,
                    "tenant_id": deployer.tenant_id,
                    "use_common_alert_schema": True,
                }
            ],
        )

        for index in range(rules):
            _metric_alert(
                monitor, f"{STACK_NAME}-rules-metric-cpu-high-{index:05d}", index, group.name, action_group.id
            )

        pulumi.export("receiverUrl", receiver_url)
        pulumi.export("webhookUrl", webhook_url)
        pulumi.export("applicationObjectId", application.object_id)
        pulumi.export("clientId", application.client_id)
        pulumi.export("identifierUri", identifier_uri)
        pulumi.export("tenantId", deployer.tenant_id)
        pulumi.export("accessTokenVersion", token_version)
        pulumi.export("roleId", role_id)
        pulumi.export("deployerObjectId", deployer.object_id)
        pulumi.export("actionGroupId", action_group.id)
        pulumi.export("resourceGroupName", group.name)
        pulumi.export("allowedSubscriptions", allowed_subscriptions)

    return program
