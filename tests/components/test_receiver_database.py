"""ReceiverService with ``database: postgresql``: the flexible server, Entra-only, TLS, private network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from secure_export.components import ReceiverService
from secure_export.stack.config import ConfigError
from secure_export.stack.loading import load_stack_file
from tests.components.test_receiver_service import BASE
from tests.secure_export.stack.test_config import _dev, _write
from tests.support.plans import CONTAINER_APP, declare, of_type, one

SERVER = "azure-native:dbforpostgresql:Server"
ADMIN = "azure-native:dbforpostgresql:AdministratorsMicrosoftEntra"
CONFIGURATION = "azure-native:dbforpostgresql:Configuration"
DATABASE = "azure-native:dbforpostgresql:Database"
FIREWALL = "azure-native:dbforpostgresql:FirewallRule"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
ENVIRONMENT = "azure-native:app:ManagedEnvironment"


def _receiver(**overrides: Any):
    def program() -> None:
        ReceiverService("rx", {**BASE, "min_replicas": 2, "max_replicas": 3, **overrides})

    return program


def _env(app: Any) -> dict[str, Any]:
    (container,) = app.inputs["template"]["containers"]
    return {e["name"]: e for e in container["env"]}


def test_postgresql_private_by_default_entra_only_tls_and_no_share() -> None:
    result = declare(_receiver(database={"kind": "postgresql"}))
    server = one(result, SERVER)
    assert server.inputs["authConfig"] == {
        "activeDirectoryAuth": "Enabled",
        "passwordAuth": "Disabled",
        "tenantId": BASE["tenant_id"],
    }
    assert "administratorLogin" not in server.inputs and "administratorLoginPassword" not in server.inputs
    assert server.inputs["network"]["publicNetworkAccess"] == "Disabled"
    assert server.inputs["backup"] == {"backupRetentionDays": 14, "geoRedundantBackup": "Disabled"}
    assert server.inputs["highAvailability"] == {"mode": "Disabled"}
    identity = one(result, IDENTITY, "rx-db-identity")
    admin = one(result, ADMIN)
    assert admin.inputs["principalType"] == "ServicePrincipal"
    assert admin.inputs["objectId"] == identity.outputs["principalId"]
    settings = {c.inputs["configurationName"]: c.inputs["value"] for c in of_type(result, CONFIGURATION)}
    assert settings == {"require_secure_transport": "on", "ssl_min_protocol_version": "TLSv1.2"}
    assert one(result, DATABASE).inputs["databaseName"] == "secure_export"
    assert not of_type(result, FIREWALL)
    # The app joins the private network and logs in with its identity's token; no file share.
    environment = one(result, ENVIRONMENT)
    assert environment.inputs["vnetConfiguration"]["infrastructureSubnetId"]
    assert not of_type(result, "azure-native:storage:StorageAccount")
    app = one(result, CONTAINER_APP)
    env = _env(app)
    url = env["SECURE_EXPORT_DB"]["value"]
    assert url.startswith("postgresql://") and url.endswith("/secure_export?sslmode=require")
    assert url.split("//", 1)[1].split("@", 1)[0] == identity.outputs["name"]  # a user, no password
    assert env["SECURE_EXPORT_DB_AUTH"]["value"] == "entra"
    assert env["AZURE_CLIENT_ID"]["value"] == identity.outputs["clientId"]
    assert identity.outputs["id"] in app.inputs["identity"]["userAssignedIdentities"]
    assert not app.inputs["template"].get("volumes")
    assert app.inputs["template"]["scale"]["maxReplicas"] == 3
    assert "rx-database-admin" in app.depends_on


def test_public_network_is_the_documented_alternative_and_ha_is_zone_redundant() -> None:
    result = declare(
        _receiver(
            database={
                "kind": "postgresql",
                "network": "public",
                "sku_name": "Standard_D2ds_v5",
                "sku_tier": "GeneralPurpose",
                "high_availability": "zone-redundant",
                "backup_retention_days": 35,
                "geo_redundant_backup": True,
            }
        )
    )
    server = one(result, SERVER)
    assert server.inputs["network"] == {"publicNetworkAccess": "Enabled"}
    assert server.inputs["highAvailability"] == {"mode": "ZoneRedundant"}
    assert server.inputs["sku"] == {"name": "Standard_D2ds_v5", "tier": "GeneralPurpose"}
    assert server.inputs["backup"] == {"backupRetentionDays": 35, "geoRedundantBackup": "Enabled"}
    rule = one(result, FIREWALL)
    assert (rule.inputs["startIpAddress"], rule.inputs["endIpAddress"]) == ("0.0.0.0", "0.0.0.0")
    assert "vnetConfiguration" not in one(result, ENVIRONMENT).inputs


def test_sqlite_refuses_more_than_one_replica_and_burstable_refuses_ha() -> None:
    with pytest.raises(Exception, match="max_replicas 3 needs database kind postgresql"):
        declare(_receiver())
    with pytest.raises(Exception, match="zone-redundant high availability needs GeneralPurpose"):
        declare(_receiver(database={"kind": "postgresql", "high_availability": "zone-redundant"}))


def _stack_problems(tmp_path: Path, receiver_changes: dict[str, Any]) -> list[str]:
    document = _dev()
    document["config"]["secure-export:receiver"].update(receiver_changes)
    with pytest.raises(ConfigError) as caught:
        load_stack_file(_write(tmp_path, "bad", document), display="stacks/Pulumi.bad.yaml")
    return caught.value.problems


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"maxReplicas": 2}, "maxReplicas 2 needs database.kind postgresql"),
        ({"database": {"kind": "sqlite", "skuName": "Standard_B1ms"}}, "skuName only apply with kind postgresql"),
        ({"database": {"kind": "postgresql", "backupRetentionDays": 40}}, "receiver.database.backupRetentionDays"),
        ({"database": {"kind": "postgresql", "storageSizeGb": 100}}, "receiver.database.storageSizeGb"),
        ({"database": {"kind": "postgresql", "highAvailability": "zone-redundant"}}, "skuTier GeneralPurpose"),
        ({"database": {"kind": "mysql"}}, "receiver.database.kind"),
        ({"database": {"kind": "postgresql", "netwrk": "public"}}, "did you mean 'network'"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    problems = _stack_problems(tmp_path, changes)
    assert any(expected in problem for problem in problems), problems


def test_prod_runs_several_replicas_on_postgresql_and_dev_one_on_sqlite() -> None:
    repo = Path(__file__).resolve().parents[2]
    prod = load_stack_file(repo / "stacks" / "Pulumi.prod.yaml").config.receiver
    dev = load_stack_file(repo / "stacks" / "Pulumi.dev.yaml").config.receiver
    assert prod is not None and dev is not None
    assert prod.database.kind == "postgresql" and prod.max_replicas >= 2 and prod.min_replicas >= 2
    assert dev.database.kind == "sqlite" and dev.max_replicas == 1
