"""Which input properties force a resource to be replaced, per resource type the program declares.

One table, each entry with where the provider says so; docs/review.md explains the rules. A change
at a listed property, or anywhere beneath it, makes ``secure-export diff`` report ``replace``.
"""

from __future__ import annotations

from collections.abc import Mapping

# pulumi-azure-native replaces a resource when any property that is part of its ARM resource URL
# changes (resource group, the resource's own name, a parent's name, an extension resource's scope):
# https://github.com/pulumi/pulumi-azure-native/issues/77 ("Any property from the path of a
# resource URL must cause replacement on update"). These are the URL path properties, by type.
_ARM_PATH: Mapping[str, tuple[str, ...]] = {
    "azure-native:resources:ResourceGroup": ("resourceGroupName",),
    "azure-native:monitor:ActionGroup": ("resourceGroupName", "actionGroupName"),
    "azure-native:monitor:MetricAlert": ("resourceGroupName", "ruleName"),
    "azure-native:monitor:ScheduledQueryRule": ("resourceGroupName", "ruleName"),
    "azure-native:monitor:ActivityLogAlert": ("resourceGroupName", "activityLogAlertName"),
    "azure-native:operationalinsights:Workspace": ("resourceGroupName", "workspaceName"),
    "azure-native:app:ManagedEnvironment": ("resourceGroupName", "environmentName"),
    "azure-native:app:ContainerApp": ("resourceGroupName", "containerAppName"),
    "azure-native:app:ManagedEnvironmentsStorage": ("resourceGroupName", "environmentName", "storageName"),
    "azure-native:storage:StorageAccount": ("resourceGroupName", "accountName"),
    "azure-native:storage:FileShare": ("resourceGroupName", "accountName", "shareName"),
    "azure-native:managedidentity:UserAssignedIdentity": ("resourceGroupName", "resourceName"),
    "azure-native:authorization:RoleAssignment": ("scope", "roleAssignmentName"),
    "azure-native:dbforpostgresql:Server": ("resourceGroupName", "serverName"),
    "azure-native:dbforpostgresql:Database": ("resourceGroupName", "serverName", "databaseName"),
    "azure-native:dbforpostgresql:Configuration": ("resourceGroupName", "serverName", "configurationName"),
    "azure-native:dbforpostgresql:AdministratorsMicrosoftEntra": ("resourceGroupName", "serverName", "objectId"),
    "azure-native:dbforpostgresql:FirewallRule": ("resourceGroupName", "serverName", "firewallRuleName"),
    "azure-native:network:VirtualNetwork": ("resourceGroupName", "virtualNetworkName"),
    "azure-native:network:Subnet": ("resourceGroupName", "virtualNetworkName", "subnetName"),
    "azure-native:privatedns:PrivateZone": ("resourceGroupName", "privateZoneName"),
    "azure-native:privatedns:VirtualNetworkLink": ("resourceGroupName", "privateZoneName", "virtualNetworkLinkName"),
}

# A tracked ARM resource's location is create-only (ARM RPC guideline RPC-Put-V1-14, enforced by the
# specs' linter as LocationMustHaveXmsMutability: "x-ms-mutability": ["read", "create"]), and
# pulumi-azure-native turns create-only properties into replacements. Where a spec lacks the
# marker the provider plans an update that Azure then refuses with InvalidResourceLocation
# (https://github.com/pulumi/pulumi-azure-native/issues/3053), so a reviewer is told "replace".
_LOCATION = ("location",)

# pulumi-azure-native's own list of further replace-triggering properties (forceNewMap in
# provider/pkg/gen/replacement.go), for the types this program declares.
_AZURE_NATIVE_FORCE_NEW: Mapping[str, tuple[str, ...]] = {
    "azure-native:authorization:RoleAssignment": ("principalId", "scope"),
    "azure-native:resources:ResourceGroup": ("location",),
    "azure-native:storage:StorageAccount": ("isHnsEnabled", "location"),
}

# The azuread provider (bridged from terraform-provider-azuread) marks these ForceNew: the
# AppRoleAssignment and Application properties say "Changing this forces a new resource to be
# created" in pulumi_azuread's own docstrings; ServicePrincipal's client (application) id is
# ForceNew in internal/services/serviceprincipals/service_principal_resource.go.
_AZUREAD_FORCE_NEW: Mapping[str, tuple[str, ...]] = {
    "azuread:index/application:Application": ("templateId",),
    "azuread:index/servicePrincipal:ServicePrincipal": ("clientId",),
    "azuread:index/appRoleAssignment:AppRoleAssignment": ("appRoleId", "principalObjectId", "resourceObjectId"),
}


def _build() -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for typ in {*_ARM_PATH, *_AZURE_NATIVE_FORCE_NEW, *_AZUREAD_FORCE_NEW}:
        names = [*_ARM_PATH.get(typ, ()), *_AZURE_NATIVE_FORCE_NEW.get(typ, ()), *_AZUREAD_FORCE_NEW.get(typ, ())]
        # Extension resources (role assignments) have no location of their own.
        if typ.startswith("azure-native:") and typ != "azure-native:authorization:RoleAssignment":
            names.extend(_LOCATION)
        table[typ] = tuple(dict.fromkeys(names))
    return table


REPLACE_ON_CHANGES: Mapping[str, tuple[str, ...]] = _build()
"""Resource type -> top-level input properties whose change replaces the resource."""


def forces_replacement(resource_type: str, path: str) -> bool:
    """Say whether a change at ``path`` (e.g. ``location`` or ``criteria.allOf[0]``) replaces the resource.

    Types missing from the table fall back to the azure-native rule for their resource group and
    location, which every ARM resource in a resource group shares.
    """
    names = REPLACE_ON_CHANGES.get(resource_type)
    if names is None:
        names = ("resourceGroupName", *_LOCATION) if resource_type.startswith("azure-native:") else ()
    return any(path == name or path.startswith((name + ".", name + "[")) for name in names)
