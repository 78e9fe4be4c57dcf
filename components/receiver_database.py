"""``ReceiverDatabase``: Azure Database for PostgreSQL flexible server for several receiver replicas.

Entra-only authentication (no password exists anywhere), the receiver's user-assigned managed
identity as the Entra administrator, TLS enforced, backups, optional zone-redundant HA, and by
default private networking: a virtual network whose app subnet hosts the Container Apps
environment and whose delegated subnet hosts the server, resolved through a private DNS zone.
docs/postgresql.md explains the choices and the ``public`` alternative.
"""

from typing import NotRequired, TypedDict

import pulumi
from pulumi_azure_native import dbforpostgresql, network, privatedns

POSTGRES_PORT = 5432
DATABASE_NAME = "secure_export"
NETWORK_MODES = ("private", "public")
HA_MODES = ("disabled", "zone-redundant")
VNET_PREFIX = "10.90.0.0/16"
APP_SUBNET_PREFIX = "10.90.0.0/23"
"""Container Apps environment subnet (workload profiles: /27 at least; /23 leaves room to scale)."""
DB_SUBNET_PREFIX = "10.90.2.0/28"
"""Delegated to Microsoft.DBforPostgreSQL/flexibleServers (a /28 is enough for one server and its standby)."""


class DatabaseSettings(TypedDict):
    """The receiver's database (``receiver.database`` in the stack config)."""

    kind: str
    """sqlite (one replica, a file on an Azure Files share) or postgresql (several replicas)."""
    sku_name: NotRequired[str | None]
    """Flexible server compute, e.g. Standard_B1ms (default) or Standard_D2ds_v5."""
    sku_tier: NotRequired[str | None]
    """Burstable (default), GeneralPurpose or MemoryOptimized; zone-redundant HA needs one of the latter two."""
    version: NotRequired[str | None]
    """PostgreSQL major version (default 16)."""
    storage_size_gb: NotRequired[int | None]
    """Storage in GiB (default 32)."""
    backup_retention_days: NotRequired[int | None]
    """Point-in-time restore window, 7..35 days (default 14)."""
    geo_redundant_backup: NotRequired[bool | None]
    """Copy backups to the paired region (default false)."""
    high_availability: NotRequired[str | None]
    """disabled (default) or zone-redundant (a standby in another zone)."""
    network: NotRequired[str | None]
    """private (default: VNet integration, no public endpoint) or public (public endpoint, Azure-internal firewall
    rule)."""
    server_name: NotRequired[str | None]
    """Azure name of the server (global DNS name); defaults to one derived from the stack."""


class ReceiverDatabaseArgs(TypedDict):
    """Inputs of ReceiverDatabase."""

    resource_group_name: pulumi.Input[str]
    """Resource group of the server (and of the network)."""
    location: str
    """Azure region."""
    tenant_id: pulumi.Input[str]
    """Entra tenant of the administrator identity."""
    administrator_principal_id: pulumi.Input[str]
    """Object (principal) id of the receiver's user-assigned managed identity."""
    administrator_name: pulumi.Input[str]
    """Name of that identity: the PostgreSQL role the receiver logs in as."""
    settings: DatabaseSettings
    """Sizing, backups, HA and network mode."""
    server_name: str
    """Azure name of the server."""
    tags: NotRequired[dict[str, str] | None]
    """Tags on every resource."""


class ReceiverDatabase(pulumi.ComponentResource):
    """A PostgreSQL flexible server and database the receiver reaches with its managed identity's Entra token."""

    url: pulumi.Output[str]
    """``SECURE_EXPORT_DB`` for the receiver (no password: SECURE_EXPORT_DB_AUTH=entra)."""
    fqdn: pulumi.Output[str]
    """The server's host name."""
    server_id: pulumi.Output[str]
    """Resource id of the server."""
    app_subnet_id: pulumi.Output[str | None]
    """With private networking: the subnet the Container Apps environment must use (else None)."""

    def __init__(self, name: str, args: ReceiverDatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("secure-export:index:ReceiverDatabase", name, {}, opts)
        settings = args["settings"]
        rg = args["resource_group_name"]
        location = args["location"]
        tags = args.get("tags")
        child = pulumi.ResourceOptions(parent=self)
        mode = settings.get("network") or "private"
        ha = settings.get("high_availability") or "disabled"
        tier = settings.get("sku_tier") or "Burstable"
        if mode not in NETWORK_MODES:
            raise ValueError(
                f"ReceiverDatabase {name}: network must be one of {', '.join(NETWORK_MODES)}, got {mode!r}"
            )
        if ha not in HA_MODES:
            raise ValueError(
                f"ReceiverDatabase {name}: high_availability must be one of {', '.join(HA_MODES)}, got {ha!r}"
            )
        if ha == "zone-redundant" and tier == "Burstable":
            raise ValueError(
                f"ReceiverDatabase {name}: zone-redundant high availability needs GeneralPurpose or "
                "MemoryOptimized, not Burstable"
            )

        network_args: dbforpostgresql.NetworkArgsDict = {"public_network_access": "Enabled"}
        depends: list[pulumi.Resource] = []
        self.app_subnet_id = pulumi.Output.from_input(None)
        if mode == "private":
            vnet = network.VirtualNetwork(
                f"{name}-vnet",
                resource_group_name=rg,
                location=location,
                address_space={"address_prefixes": [VNET_PREFIX]},
                tags=tags,
                opts=child,
            )
            app_subnet = network.Subnet(
                f"{name}-apps-subnet",
                resource_group_name=rg,
                virtual_network_name=vnet.name,
                subnet_name="apps",
                address_prefix=APP_SUBNET_PREFIX,
                delegations=[{"name": "container-apps", "service_name": "Microsoft.App/environments"}],
                opts=child,
            )
            db_subnet = network.Subnet(
                f"{name}-db-subnet",
                resource_group_name=rg,
                virtual_network_name=vnet.name,
                subnet_name="postgres",
                address_prefix=DB_SUBNET_PREFIX,
                delegations=[{"name": "postgres", "service_name": "Microsoft.DBforPostgreSQL/flexibleServers"}],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[app_subnet]),  # one subnet change at a time
            )
            zone = privatedns.PrivateZone(
                f"{name}-dns",
                resource_group_name=rg,
                location="global",
                private_zone_name=f"{args['server_name']}.private.postgres.database.azure.com",
                tags=tags,
                opts=child,
            )
            link = privatedns.VirtualNetworkLink(
                f"{name}-dns-link",
                resource_group_name=rg,
                location="global",
                private_zone_name=zone.name,
                virtual_network={"id": vnet.id},
                registration_enabled=False,
                tags=tags,
                opts=child,
            )
            depends.append(link)
            network_args = {
                "public_network_access": "Disabled",
                "delegated_subnet_resource_id": db_subnet.id,
                "private_dns_zone_arm_resource_id": zone.id,
            }
            self.app_subnet_id = app_subnet.id

        server = dbforpostgresql.Server(
            f"{name}-server",
            server_name=args["server_name"],
            resource_group_name=rg,
            location=location,
            version=settings.get("version") or "16",
            sku={"name": settings.get("sku_name") or "Standard_B1ms", "tier": tier},
            storage={"storage_size_gb": settings.get("storage_size_gb") or 32, "auto_grow": "Enabled"},
            backup={
                "backup_retention_days": settings.get("backup_retention_days") or 14,
                "geo_redundant_backup": "Enabled" if settings.get("geo_redundant_backup") else "Disabled",
            },
            high_availability={"mode": "ZoneRedundant" if ha == "zone-redundant" else "Disabled"},
            # Entra ID only: no administrator login or password is ever created.
            auth_config={
                "active_directory_auth": "Enabled",
                "password_auth": "Disabled",
                "tenant_id": args["tenant_id"],
            },
            network=network_args,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )
        admin = dbforpostgresql.AdministratorsMicrosoftEntra(
            f"{name}-admin",
            resource_group_name=rg,
            server_name=server.name,
            object_id=args["administrator_principal_id"],
            principal_name=args["administrator_name"],
            principal_type="ServicePrincipal",
            tenant_id=args["tenant_id"],
            opts=child,
        )
        tls = dbforpostgresql.Configuration(
            f"{name}-require-tls",
            resource_group_name=rg,
            server_name=server.name,
            configuration_name="require_secure_transport",
            value="on",
            source="user-override",
            opts=child,
        )
        tls_version = dbforpostgresql.Configuration(
            f"{name}-tls-version",
            resource_group_name=rg,
            server_name=server.name,
            configuration_name="ssl_min_protocol_version",
            value="TLSv1.2",
            source="user-override",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[tls]),
        )
        database = dbforpostgresql.Database(
            f"{name}-db",
            resource_group_name=rg,
            server_name=server.name,
            database_name=DATABASE_NAME,
            charset="UTF8",
            collation="en_US.utf8",
            opts=child,
        )
        if mode == "public":
            # Reachable from Azure's own address space only (Container Apps' outbound addresses are not
            # fixed); Entra-only authentication and TLS still apply. See docs/postgresql.md.
            dbforpostgresql.FirewallRule(
                f"{name}-azure-services",
                resource_group_name=rg,
                server_name=server.name,
                firewall_rule_name="AllowAllAzureServicesAndResourcesWithinAzureIps",
                start_ip_address="0.0.0.0",
                end_ip_address="0.0.0.0",
                opts=child,
            )
        self.ready: list[pulumi.Resource] = [admin, tls, tls_version, database]
        """What must exist before the receiver starts (it logs in as the administrator at once)."""
        # <server>.postgres.database.azure.com is the documented host name (also with private access,
        # where the private DNS zone resolves it), so it is known before the server exists.
        self.fqdn = server.name.apply(lambda server_name: f"{server_name}.postgres.database.azure.com")
        self.server_id = server.id
        self.url = pulumi.Output.all(args["administrator_name"], self.fqdn).apply(
            lambda parts: f"postgresql://{parts[0]}@{parts[1]}:{POSTGRES_PORT}/{DATABASE_NAME}?sslmode=require"
        )
        self.register_outputs(
            {"url": self.url, "fqdn": self.fqdn, "server_id": self.server_id, "app_subnet_id": self.app_subnet_id}
        )
