"""``ReceiverService``: the secure-export receiver on Azure Container Apps."""

import hashlib
import hmac
import json
import re
import uuid
from typing import Any, NotRequired, TypedDict

import pulumi
from pulumi_azure_native import (
    app,
    authorization,
    managedidentity,
    operationalinsights,
    resources,
    storage,
)

from secure_export.components.receiver_database import DatabaseSettings, ReceiverDatabase
from secure_export.components.receiver_watch import watch_receiver
from secure_export.contract import (
    DATA_DIR,
    ENV_ALLOWED_CALLERS,
    ENV_ALLOWED_SUBSCRIPTIONS,
    ENV_AUDIENCES,
    ENV_BMC_PASSWORD,
    ENV_BMC_URL,
    ENV_BMC_USERNAME,
    ENV_CORRELATION,
    ENV_DB,
    ENV_DB_AUTH,
    ENV_ITSM,
    ENV_ITSM_REVISION,
    ENV_OPS_PORT,
    ENV_REOPEN_WINDOW,
    ENV_ROUTING,
    ENV_SERVICENOW_CLIENT_ID,
    ENV_SERVICENOW_CLIENT_SECRET,
    ENV_SERVICENOW_PASSWORD,
    ENV_SERVICENOW_TARGET,
    ENV_SERVICENOW_URL,
    ENV_SERVICENOW_USERNAME,
    ENV_STATELESS_TTL,
    ENV_TENANT_ID,
    IMAGE_DB_PATH,
    OPS_PORT,
    RECEIVER_PORT,
)
from secure_export.stack.validation import checked_tenant_id, subscription_of

ROUTING_MOUNT_PATH = "/etc/secure-export"
ROUTING_SECRET = "routing-file"
ROUTING_PATH = f"{ROUTING_MOUNT_PATH}/routing.json"
"""Where the routing file is mounted: a secret volume, so the file is not a giant environment value."""
RECEIVER_UID = 10001
"""User and group id the receiver image runs as (receiver/Dockerfile); the inbox share is mounted for it."""
INBOX_MOUNT_OPTIONS = f"uid={RECEIVER_UID},gid={RECEIVER_UID},dir_mode=0700,file_mode=0600,nobrl,mfsymlinks"
"""SMB mount options of the inbox share: owned by the receiver's user only; nobrl keeps SQLite's
byte-range locks local to the one writer instead of sending them to the file server."""
ACR_PULL_ROLE_ID = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
"""Built-in role AcrPull."""
ITSM_BACKENDS = ("embedded", "servicenow", "bmc-helix")
DATABASE_KINDS = ("sqlite", "postgresql")
CORRELATIONS = ("alert", "rule-target")
SERVICENOW_TARGETS = ("incident", "event")


class ReceiverServiceArgs(TypedDict):
    """Inputs of ReceiverService."""

    location: str
    """Azure region of the resource group, workspace, environment and app."""
    resource_group_name: pulumi.Input[str]
    """Resource group name; created unless create_resource_group is false."""
    image_registry: str
    """Registry login server, e.g. ghcr.io or myregistry.azurecr.io."""
    image_repository: str
    """Repository in the registry, e.g. example/secure-export."""
    tenant_id: pulumi.Input[str]
    """Azure AD tenant whose tokens the receiver accepts."""
    audiences: list[pulumi.Input[str]]
    """Accepted token audiences: the application's identifier URI and client id."""
    create_resource_group: NotRequired[bool | None]
    """Create the resource group (default true) or use an existing one."""
    image_tag: NotRequired[str | None]
    """Image tag; give this or image_digest."""
    image_digest: NotRequired[str | None]
    """Image digest (sha256:...), preferred for production; give this or image_tag."""
    registry_resource_id: NotRequired[str | None]
    """Resource id of an Azure Container Registry to pull from with a user-assigned managed identity (granted AcrPull).
    Unset: the image is public."""
    container_app_name: NotRequired[str | None]
    """Azure name of the container app (2..32 lowercase letters, digits, hyphens). Defaults to the component name."""
    allowed_callers: NotRequired[list[str] | None]
    """Accepted appid/azp claims. Unset: the receiver's default (the AzNS AAD Webhook client id)."""
    allowed_subscriptions: NotRequired[pulumi.Input[list[str]] | None]
    """Subscriptions whose alerts the receiver accepts. Unset or empty: all."""
    itsm: NotRequired[str | None]
    """ITSM backend: embedded (default), servicenow or bmc-helix."""
    correlation: NotRequired[str | None]
    """Work item correlation: alert (default) or rule-target."""
    servicenow_url: NotRequired[str | None]
    """ServiceNow instance URL, e.g. https://example.service-now.com."""
    servicenow_target: NotRequired[str | None]
    """ServiceNow table the receiver writes: incident (default) or event."""
    servicenow_username: NotRequired[pulumi.Input[str] | None]
    """ServiceNow user for basic auth (held as a container-app secret)."""
    servicenow_password: NotRequired[pulumi.Input[str] | None]
    """ServiceNow password (a Pulumi secret; held as a container-app secret)."""
    servicenow_client_id: NotRequired[pulumi.Input[str] | None]
    """ServiceNow OAuth client id (held as a container-app secret)."""
    servicenow_client_secret: NotRequired[pulumi.Input[str] | None]
    """ServiceNow OAuth client secret (a Pulumi secret; held as a container-app secret)."""
    bmc_url: NotRequired[str | None]
    """BMC Helix AR System REST base URL (https), e.g. https://acme-restapi.onbmc.com."""
    bmc_username: NotRequired[pulumi.Input[str] | None]
    """BMC Helix user the receiver logs in as."""
    bmc_password: NotRequired[pulumi.Input[str] | None]
    """BMC Helix password (a Pulumi secret; held as a container-app secret)."""
    cpu: NotRequired[float | None]
    """vCPU per replica (default 0.5)."""
    memory: NotRequired[str | None]
    """Memory per replica (default 1Gi)."""
    min_replicas: NotRequired[int | None]
    """Minimum replicas, at least 1 so alerts are never answered by a cold start (default 1)."""
    max_replicas: NotRequired[int | None]
    """Maximum replicas (default 1; more than 1 needs database kind postgresql: SQLite on the file share has a single
    writer)."""
    database: NotRequired[DatabaseSettings | None]
    """The inbox's database: sqlite (default, an Azure Files share) or postgresql (a flexible server, several
    replicas)."""
    concurrent_requests: NotRequired[int | None]
    """Concurrent HTTP requests per replica before the HTTP scale rule adds one (default 50)."""
    log_retention_days: NotRequired[int | None]
    """Log Analytics retention in days (default 30)."""
    routing: NotRequired[str | None]
    """Routing file as JSON text (docs/routing.md), checked with secure_export.routing; the container reads it
    from a file mounted from a container-app secret (SECURE_EXPORT_ROUTING). Unset: every item to the default."""
    reopen_window: NotRequired[str | None]
    """SECURE_EXPORT_REOPEN_WINDOW: seconds or ISO 8601 duration (receiver default PT1H)."""
    stateless_ttl: NotRequired[str | None]
    """SECURE_EXPORT_STATELESS_TTL: resolve items of alerts Azure never resolves after this long (default off)."""
    operator_emails: NotRequired[list[str] | None]
    """E-mail addresses of the receiver's operators. Set: alert rules on the receiver itself (parked deliveries,
    dispatch paused, refused tokens, no delivery, restarts) notify them through an action group of their own, never
    through the receiver's webhook."""
    no_delivery_window: NotRequired[str | None]
    """ISO 8601 window of the "Azure sent alerts but none reached the ITSM tool" rule (default PT1H)."""
    refused_token_threshold: NotRequired[int | None]
    """Refused tokens (401/403) within 5 minutes that raise the operators' alert (default 20)."""
    tags: NotRequired[dict[str, str] | None]
    """Tags on every resource."""


def acr_pull_role_definition_id(registry_resource_id: str) -> str:
    """The AcrPull role definition id in the registry's own subscription (which may not be the deploying one)."""
    subscription = subscription_of(registry_resource_id)
    if subscription is None:
        # Built-in roles also resolve at tenant level.
        return f"/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL_ROLE_ID}"
    return f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL_ROLE_ID}"


def _app_name(value: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = "r" + name
    return name[:32].rstrip("-")


def _storage_account_name(seed: str) -> str:
    # Storage account names are global, 3..24 lowercase letters and digits.
    return "sx" + hashlib.sha256(seed.encode()).hexdigest()[:20]


def _server_name(seed: str) -> str:
    # Flexible server names are global DNS labels: 3..63 lowercase letters, digits and hyphens.
    return "sx-" + hashlib.sha256(seed.encode()).hexdigest()[:20]


def _image(args: ReceiverServiceArgs, name: str) -> str:
    registry, repository = args.get("image_registry"), args.get("image_repository")
    tag, digest = args.get("image_tag"), args.get("image_digest")
    if not registry or not repository:
        raise ValueError(f"ReceiverService {name}: image_registry and image_repository are required")
    if bool(tag) == bool(digest):
        raise ValueError(f"ReceiverService {name}: give exactly one of image_tag or image_digest")
    if digest:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ValueError(f"ReceiverService {name}: image_digest must be sha256:<64 hex digits>, got {digest!r}")
        return f"{registry}/{repository}@{digest}"
    return f"{registry}/{repository}:{tag}"


def _routing(
    name: str, args: ReceiverServiceArgs, secrets: list[dict[str, Any]], env: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check the routing file and the lifecycle durations; add the secret, variables, volume and mount."""
    for field, variable in (
        ("reopen_window", ENV_REOPEN_WINDOW),
        ("stateless_ttl", ENV_STATELESS_TTL),
    ):
        value = args.get(field)
        if value is not None:
            env.append({"name": variable, "value": str(value)})
    text = args.get("routing")
    if not text:
        return [], []
    from secure_export.routing import RoutingError, parse_routing

    try:
        parse_routing(json.loads(text), source=f"of ReceiverService {name}")
    except ValueError as error:  # RoutingError, or text that is not JSON
        problems = error.problems if isinstance(error, RoutingError) else [f"not JSON: {error}"]
        raise ValueError(f"ReceiverService {name}: routing: " + "; ".join(problems)) from None
    secrets.append({"name": ROUTING_SECRET, "value": text})
    env.append({"name": ENV_ROUTING, "value": ROUTING_PATH})
    volume = {
        "name": "routing",
        "storage_type": "Secret",
        "secrets": [{"secret_ref": ROUTING_SECRET, "path": ROUTING_PATH.rsplit("/", 1)[1]}],
    }
    return [volume], [{"volume_name": "routing", "mount_path": ROUTING_MOUNT_PATH}]


def _choice(name: str, field: str, value: str | None, allowed: tuple[str, ...]) -> str:
    chosen = value or allowed[0]
    if chosen not in allowed:
        raise ValueError(f"ReceiverService {name}: {field} must be one of {', '.join(allowed)}, got {value!r}")
    return chosen


class ReceiverService(pulumi.ComponentResource):
    """The receiver on Azure Container Apps: resource group, Log Analytics workspace, managed environment, an Azure
    Files share for the durable inbox, and the container app with HTTPS-only external ingress, health probes, an
    HTTP scale rule and ServiceNow or BMC Helix credentials held as container-app secrets."""

    url: pulumi.Output[str]
    """HTTPS base URL of the receiver (no path)."""
    fqdn: pulumi.Output[str]
    """Host name of the receiver."""
    resource_group_name: pulumi.Output[str]
    """Resource group that holds the receiver."""
    container_app_id: pulumi.Output[str]
    """Resource id of the container app."""
    workspace_id: pulumi.Output[str]
    """Resource id of the Log Analytics workspace."""
    environment_id: pulumi.Output[str]
    """Resource id of the Container Apps managed environment."""

    def __init__(self, name: str, args: ReceiverServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("secure-export:index:ReceiverService", name, {}, opts)
        location = args.get("location")
        if not location:
            raise ValueError(f"ReceiverService {name}: location is required")
        if args.get("resource_group_name") is None or args.get("tenant_id") is None:
            raise ValueError(f"ReceiverService {name}: resource_group_name and tenant_id are required")
        tenant_id = checked_tenant_id(f"ReceiverService {name}", args.get("tenant_id"))
        audiences = list(args.get("audiences") or [])
        if not audiences:
            raise ValueError(f"ReceiverService {name}: audiences must list the identifier URI and/or client id")
        image = _image(args, name)
        itsm = _choice(name, "itsm", args.get("itsm"), ITSM_BACKENDS)
        correlation = _choice(name, "correlation", args.get("correlation"), CORRELATIONS)
        min_replicas = args.get("min_replicas") or 1
        max_replicas = args.get("max_replicas") or 1
        if min_replicas < 1:
            raise ValueError(f"ReceiverService {name}: min_replicas must be at least 1, got {min_replicas}")
        if max_replicas < min_replicas:
            raise ValueError(
                f"ReceiverService {name}: max_replicas {max_replicas} is below min_replicas {min_replicas}"
            )
        database_settings: DatabaseSettings = args.get("database") or {"kind": "sqlite"}
        kind = _choice(name, "database.kind", database_settings.get("kind") or "sqlite", DATABASE_KINDS)
        if kind == "sqlite" and max_replicas > 1:
            raise ValueError(
                f"ReceiverService {name}: max_replicas {max_replicas} needs database kind postgresql; "
                "SQLite on the Azure Files share is for one replica only"
            )
        tags = args.get("tags")
        child = pulumi.ResourceOptions(parent=self)

        rg_name: pulumi.Input[str] = args.get("resource_group_name")
        if args.get("create_resource_group", True) is not False:
            rg = resources.ResourceGroup(
                f"{name}-rg", resource_group_name=rg_name, location=location, tags=tags, opts=child
            )
            rg_name = rg.name

        workspace = operationalinsights.Workspace(
            f"{name}-logs",
            resource_group_name=rg_name,
            location=location,
            sku={"name": "PerGB2018"},
            retention_in_days=args.get("log_retention_days") or 30,
            tags=tags,
            opts=child,
        )
        workspace_keys = operationalinsights.get_shared_keys_output(
            resource_group_name=rg_name, workspace_name=workspace.name, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        database: ReceiverDatabase | None = None
        db_identity: Any = None
        environment_network: dict[str, Any] = {}
        if kind == "postgresql":
            # User-assigned, so the database can make it its administrator before the app exists.
            db_identity = managedidentity.UserAssignedIdentity(
                f"{name}-db-identity", resource_group_name=rg_name, location=location, tags=tags, opts=child
            )
            database = ReceiverDatabase(
                f"{name}-database",
                {
                    "resource_group_name": rg_name,
                    "location": location,
                    "tenant_id": tenant_id,
                    "administrator_principal_id": db_identity.principal_id,
                    "administrator_name": db_identity.name,
                    "settings": database_settings,
                    "server_name": database_settings.get("server_name")
                    or _server_name(f"{pulumi.get_project()}/{pulumi.get_stack()}/{name}"),
                    "tags": tags,
                },
                opts=child,
            )
            if (database_settings.get("network") or "private") == "private":
                environment_network = {
                    "vnet_configuration": {"infrastructure_subnet_id": database.app_subnet_id, "internal": False},
                    "workload_profiles": [{"name": "Consumption", "workload_profile_type": "Consumption"}],
                }
        environment = app.ManagedEnvironment(
            f"{name}-env",
            **environment_network,
            resource_group_name=rg_name,
            location=location,
            app_logs_configuration={
                "destination": "log-analytics",
                "log_analytics_configuration": {
                    "customer_id": workspace.customer_id,
                    "shared_key": pulumi.Output.secret(workspace_keys.primary_shared_key),
                },
            },
            tags=tags,
            opts=child,
        )

        secrets, env = self._environment(name, args, tenant_id, audiences, itsm, correlation)
        # Before the revision HMAC below: the routing file is a secret too, so a changed file starts a revision.
        routing_volume, routing_mount = _routing(name, args, secrets, env)
        volumes: list[dict[str, Any]] = list(routing_volume)
        volume_mounts: list[dict[str, Any]] = list(routing_mount)
        if database is not None:
            env = [e for e in env if e["name"] != ENV_DB] + [
                {"name": ENV_DB, "value": database.url},
                {"name": ENV_DB_AUTH, "value": "entra"},
                # DefaultAzureCredential picks this user-assigned identity for the database token.
                {"name": "AZURE_CLIENT_ID", "value": db_identity.client_id},
            ]
            # No storage account exists: the workspace's shared key (also a secret held in Azure) keys the HMAC.
            revision_key: Any = workspace_keys.primary_shared_key
        else:
            volume_name, account_keys = self._sqlite_share(name, rg_name, location, environment, tags)
            volumes.insert(
                0,
                {
                    "name": "inbox",
                    "storage_type": "AzureFile",
                    "storage_name": volume_name,
                    "mount_options": INBOX_MOUNT_OPTIONS,
                },
            )
            volume_mounts.insert(0, {"volume_name": "inbox", "mount_path": DATA_DIR})
            revision_key = account_keys.keys[0].value
        if secrets:
            # Container Apps starts no revision when only a secret changes; this variable in the
            # template changes with them. An HMAC keyed with a key held in Azure (the inbox storage
            # account's, or with PostgreSQL the workspace's), so the value can be shown (plan, portal)
            # and reveals nothing guessable; it is unsecreted so that the rest of the template stays
            # readable in plans.
            key = pulumi.Output.secret(revision_key)
            revision = pulumi.Output.all(key, *[secret["value"] for secret in secrets]).apply(
                lambda parts: credentials_revision(parts[0], parts[1:])
            )
            env.append({"name": ENV_ITSM_REVISION, "value": pulumi.Output.unsecret(revision)})

        registries: Any = None
        identity: Any = None
        app_depends_on: list[pulumi.Resource] = []
        if args.get("registry_resource_id"):
            pull_identity = managedidentity.UserAssignedIdentity(
                f"{name}-pull-identity", resource_group_name=rg_name, location=location, tags=tags, opts=child
            )
            registry_id = str(args.get("registry_resource_id"))
            acr_pull = authorization.RoleAssignment(
                f"{name}-acr-pull",
                role_assignment_name=str(
                    uuid.uuid5(uuid.NAMESPACE_URL, f"{registry_id}/{pulumi.get_stack()}/{name}/AcrPull")
                ),
                scope=registry_id,
                principal_id=pull_identity.principal_id,
                principal_type="ServicePrincipal",
                role_definition_id=acr_pull_role_definition_id(registry_id),
                opts=child,
            )
            # The first revision pulls the image as soon as the app exists: the grant must be there first.
            app_depends_on.append(acr_pull)
            registries = [{"server": args.get("image_registry"), "identity": pull_identity.id}]
            identity = {"type": "UserAssigned", "user_assigned_identities": [pull_identity.id]}
        if database is not None:
            identities = [*(identity["user_assigned_identities"] if identity else []), db_identity.id]
            identity = {"type": "UserAssigned", "user_assigned_identities": identities}
            # The administrator role, TLS settings and database exist before the first replica logs in.
            app_depends_on.extend(database.ready)

        app_name = _app_name(args.get("container_app_name") or name)
        # The nested dicts below are inferred as dict[str, object], which no overload's TypedDicts accept.
        container_app = app.ContainerApp(  # type: ignore[call-overload]
            f"{name}-app",
            container_app_name=app_name,
            resource_group_name=rg_name,
            location=location,
            managed_environment_id=environment.id,
            identity=identity,
            configuration={
                "active_revisions_mode": "Single",
                "ingress": {
                    "external": True,
                    "allow_insecure": False,
                    "target_port": RECEIVER_PORT,
                    "transport": "auto",
                    # The ops port is reachable only from inside the environment (external: false).
                    "additional_port_mappings": [
                        {"external": False, "target_port": OPS_PORT, "exposed_port": OPS_PORT}
                    ],
                },
                "secrets": secrets or None,
                "registries": registries,
            },
            template={
                "containers": [
                    {
                        "name": "receiver",
                        "image": image,
                        "command": ["secure-export"],
                        "args": ["serve", "--host", "0.0.0.0", "--port", str(RECEIVER_PORT)],
                        "env": env,
                        "resources": {"cpu": args.get("cpu") or 0.5, "memory": args.get("memory") or "1Gi"},
                        "probes": [
                            {
                                "type": "Liveness",
                                "http_get": {"path": "/healthz", "port": RECEIVER_PORT},
                                "period_seconds": 10,
                                "failure_threshold": 3,
                            },
                            {
                                "type": "Readiness",
                                "http_get": {"path": "/readyz", "port": RECEIVER_PORT},
                                "period_seconds": 5,
                                "failure_threshold": 3,
                            },
                        ],
                        "volume_mounts": volume_mounts or None,
                    }
                ],
                "scale": {
                    "min_replicas": min_replicas,
                    "max_replicas": max_replicas,
                    "rules": [
                        {
                            "name": "http",
                            "http": {
                                "metadata": {"concurrentRequests": str(int(args.get("concurrent_requests") or 50))}
                            },
                        }
                    ],
                },
                "volumes": volumes or None,
            },
            workload_profile_name="Consumption" if environment_network else None,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=app_depends_on),
        )

        # The FQDN of an app with external ingress is <app name>.<environment default domain>;
        # building it from there keeps it out of the (secret-bearing) configuration output.
        self.fqdn = environment.default_domain.apply(lambda domain: f"{app_name}.{domain}")
        self.url = self.fqdn.apply(lambda fqdn: f"https://{fqdn}")
        self.resource_group_name = pulumi.Output.from_input(rg_name)
        self.container_app_id = container_app.id
        self.workspace_id = workspace.id
        self.environment_id = environment.id
        operator_emails = list(args.get("operator_emails") or [])
        if operator_emails:
            watch_receiver(
                name,
                parent=self,
                resource_group_name=rg_name,
                location=location,
                app_name=app_name,
                container_app_id=container_app.id,
                workspace_id=workspace.id,
                operator_emails=operator_emails,
                no_delivery_window=args.get("no_delivery_window") or "PT1H",
                refused_token_threshold=int(args.get("refused_token_threshold") or 20),
                tags=tags,
            )
        self.register_outputs(
            {
                "url": self.url,
                "fqdn": self.fqdn,
                "resource_group_name": self.resource_group_name,
                "container_app_id": self.container_app_id,
                "workspace_id": self.workspace_id,
                "environment_id": self.environment_id,
            }
        )

    def _sqlite_share(self, name: str, rg_name: Any, location: str, environment: Any, tags: Any) -> tuple[Any, Any]:
        """The SQLite inbox's Azure Files share, mounted into the environment; returns its storage name and the
        account's keys."""
        child = pulumi.ResourceOptions(parent=self)
        # The inbox (SQLite) must outlive revisions and restarts: an Azure Files share, one writer.
        account = storage.StorageAccount(
            f"{name}-inbox-storage",
            account_name=_storage_account_name(f"{pulumi.get_project()}/{pulumi.get_stack()}/{name}"),
            resource_group_name=rg_name,
            location=location,
            kind="StorageV2",
            sku={"name": "Standard_LRS"},
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            allow_blob_public_access=False,
            tags=tags,
            opts=child,
        )
        share = storage.FileShare(
            f"{name}-inbox-share",
            account_name=account.name,
            resource_group_name=rg_name,
            share_name="inbox",
            share_quota=5,
            opts=child,
        )
        account_keys = storage.list_storage_account_keys_output(
            account_name=account.name, resource_group_name=rg_name, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        env_storage = app.ManagedEnvironmentsStorage(
            f"{name}-inbox-mount",
            environment_name=environment.name,
            resource_group_name=rg_name,
            storage_name="inbox",
            properties={
                "azure_file": {
                    "account_name": account.name,
                    "account_key": pulumi.Output.secret(account_keys.keys[0].value),
                    "share_name": share.name,
                    "access_mode": "ReadWrite",
                }
            },
            opts=child,
        )
        return env_storage.name, account_keys

    @staticmethod
    def _environment(
        name: str, args: ReceiverServiceArgs, tenant_id: Any, audiences: list[Any], itsm: str, correlation: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Return the container-app secrets and the container's environment (docs/design.md contract)."""
        env: list[dict[str, Any]] = [
            {"name": ENV_OPS_PORT, "value": str(OPS_PORT)},
            {"name": ENV_TENANT_ID, "value": tenant_id},
            {"name": ENV_AUDIENCES, "value": pulumi.Output.all(*audiences).apply(",".join)},
            {"name": ENV_DB, "value": IMAGE_DB_PATH},
            {"name": ENV_ITSM, "value": itsm},
            {"name": ENV_CORRELATION, "value": correlation},
        ]
        if args.get("allowed_callers"):
            env.append({"name": ENV_ALLOWED_CALLERS, "value": ",".join(args["allowed_callers"] or [])})
        allowed_subscriptions = args.get("allowed_subscriptions")
        if isinstance(allowed_subscriptions, pulumi.Output) or allowed_subscriptions:
            # An Output (known at deployment) that comes out empty means "all", as an unset variable does.
            joined = pulumi.Output.from_input(allowed_subscriptions).apply(lambda subs: ",".join(subs or []))
            env.append({"name": ENV_ALLOWED_SUBSCRIPTIONS, "value": joined})
        secrets: list[dict[str, Any]] = []
        if itsm == "bmc-helix":
            return _bmc_environment(name, args, secrets, env)
        if itsm != "servicenow":
            return secrets, env
        url = args.get("servicenow_url")
        if not url or not url.startswith("https://"):
            raise ValueError(
                f"ReceiverService {name}: servicenow_url must be an https:// URL for the servicenow backend"
            )
        basic = args.get("servicenow_username") is not None and args.get("servicenow_password") is not None
        oauth = args.get("servicenow_client_id") is not None and args.get("servicenow_client_secret") is not None
        if not (basic or oauth):
            raise ValueError(
                f"ReceiverService {name}: the servicenow backend needs servicenow_username and servicenow_password, "
                "or servicenow_client_id and servicenow_client_secret"
            )
        target = _choice(name, "servicenow_target", args.get("servicenow_target"), SERVICENOW_TARGETS)
        env.append({"name": ENV_SERVICENOW_URL, "value": url})
        env.append({"name": ENV_SERVICENOW_TARGET, "value": target})
        for field, secret_name, variable in (
            ("servicenow_username", "servicenow-username", ENV_SERVICENOW_USERNAME),
            ("servicenow_password", "servicenow-password", ENV_SERVICENOW_PASSWORD),
            ("servicenow_client_id", "servicenow-client-id", ENV_SERVICENOW_CLIENT_ID),
            ("servicenow_client_secret", "servicenow-client-secret", ENV_SERVICENOW_CLIENT_SECRET),
        ):
            value = args.get(field)
            if value is None:
                continue
            # Credentials only ever travel as Pulumi secrets and container-app secrets.
            secrets.append({"name": secret_name, "value": pulumi.Output.secret(value)})
            env.append({"name": variable, "secret_ref": secret_name})
        return secrets, env


def _bmc_environment(
    name: str, args: ReceiverServiceArgs, secrets: list[dict[str, Any]], env: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Add the BMC Helix variables: URL and user as values, the password as a container-app secret."""
    url = args.get("bmc_url")
    if not url or not url.startswith("https://"):
        raise ValueError(f"ReceiverService {name}: bmc_url must be an https:// URL for the bmc-helix backend")
    if args.get("bmc_username") is None or args.get("bmc_password") is None:
        raise ValueError(f"ReceiverService {name}: the bmc-helix backend needs bmc_username and bmc_password")
    env.append({"name": ENV_BMC_URL, "value": url})
    env.append({"name": ENV_BMC_USERNAME, "value": args.get("bmc_username")})
    secrets.append({"name": "bmc-password", "value": pulumi.Output.secret(args.get("bmc_password"))})
    env.append({"name": ENV_BMC_PASSWORD, "secret_ref": "bmc-password"})
    return secrets, env


def credentials_revision(key: str, values: Any) -> str:
    """The value of :data:`ENV_ITSM_REVISION`: HMAC-SHA256 of the credentials under ``key``.

    Changes whenever any credential changes; without ``key`` (held in Azure, a Pulumi secret) it
    cannot be checked against a guessed password.
    """
    digest = hmac.new(str(key).encode(), digestmod=hashlib.sha256)
    for value in values:
        digest.update(str(value).encode() + b"\0")
    return digest.hexdigest()[:32]
