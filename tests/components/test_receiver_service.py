import pulumi
import pytest

from secure_export.components import ReceiverService
from tests.support.plans import CONTAINER_APP, declare, of_type, one

TENANT = "0b6f4c1e-3d2a-4f5b-8c9d-7e6f5a4b3c2d"

PASSWORD = "s3cr3t-Passw0rd-for-test"
CLIENT_SECRET = "oauth-client-secret-for-test"
DIGEST = "sha256:" + "ab" * 32
BASE = {
    "location": "westeurope",
    "resource_group_name": "rg-rx",
    "image_registry": "ghcr.io",
    "image_repository": "example/secure-export",
    "image_tag": "1.2.3",
    "tenant_id": TENANT,
    "audiences": ["api://rx", "client-id"],
}


def _receiver(**overrides):
    def program():
        receiver = ReceiverService("rx", {**BASE, **overrides})
        pulumi.export("url", receiver.url)
        pulumi.export("rg", receiver.resource_group_name)

    return program


def _servicenow(**overrides):
    return _receiver(
        itsm="servicenow",
        servicenow_url="https://example.service-now.com",
        servicenow_username="svc-user",
        servicenow_password=pulumi.Output.secret(PASSWORD),
        servicenow_client_id="oauth-client",
        servicenow_client_secret=CLIENT_SECRET,
        **overrides,
    )


def _container(app):
    (container,) = app.inputs["template"]["containers"]
    return container


def _env(app):
    return {e["name"]: e for e in _container(app)["env"]}


def test_ingress_is_external_and_https_only_on_the_receiver_port():
    app = one(declare(_receiver()), CONTAINER_APP)
    ingress = app.inputs["configuration"]["ingress"]
    assert ingress["external"] is True
    assert ingress["allowInsecure"] is False
    assert ingress["targetPort"] == 8080
    assert _container(app)["args"] == ["serve", "--host", "0.0.0.0", "--port", "8080"]


def test_liveness_and_readiness_probes_hit_healthz_and_readyz():
    probes = {p["type"]: p["httpGet"] for p in _container(one(declare(_receiver()), CONTAINER_APP))["probes"]}
    assert probes["Liveness"]["path"] == "/healthz"
    assert probes["Readiness"]["path"] == "/readyz"
    assert probes["Liveness"]["port"] == probes["Readiness"]["port"] == 8080


def test_scale_keeps_one_replica_warm_with_an_http_rule():
    scale = one(declare(_receiver(concurrent_requests=30)), CONTAINER_APP).inputs["template"]["scale"]
    assert scale["minReplicas"] >= 1
    assert scale["rules"] == [{"name": "http", "http": {"metadata": {"concurrentRequests": "30"}}}]
    with pytest.raises(ValueError, match="min_replicas must be at least 1"):
        declare(_receiver(min_replicas=-1))


def test_environment_follows_the_design_contract():
    env = _env(
        one(declare(_receiver(allowed_subscriptions=["sub-a", "sub-b"], correlation="rule-target")), CONTAINER_APP)
    )
    assert env["SECURE_EXPORT_TENANT_ID"]["value"] == TENANT
    assert env["SECURE_EXPORT_AUDIENCES"]["value"] == "api://rx,client-id"
    assert env["SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS"]["value"] == "sub-a,sub-b"
    assert env["SECURE_EXPORT_ITSM"]["value"] == "embedded"
    assert env["SECURE_EXPORT_CORRELATION"]["value"] == "rule-target"
    assert env["SECURE_EXPORT_DB"]["value"].startswith("/data/")
    assert "SECURE_EXPORT_SERVICENOW_PASSWORD" not in env


def test_inbox_lives_on_a_mounted_file_share():
    result = declare(_receiver())
    app = one(result, CONTAINER_APP)
    (volume,) = app.inputs["template"]["volumes"]
    assert volume["storageType"] == "AzureFile"
    options = volume["mountOptions"].split(",")
    assert {"uid=10001", "gid=10001", "nobrl"} <= set(options)
    assert _container(app)["volumeMounts"] == [{"volumeName": volume["name"], "mountPath": "/data"}]
    storage = one(result, "azure-native:app:ManagedEnvironmentsStorage")
    assert "configuration" not in storage.inputs
    assert "properties" in storage.secret_inputs


def test_servicenow_credentials_reach_the_container_app_only_as_secrets():
    app = one(declare(_servicenow(servicenow_target="event")), CONTAINER_APP)
    env = _env(app)
    for variable, secret in [
        ("SECURE_EXPORT_SERVICENOW_USERNAME", "servicenow-username"),
        ("SECURE_EXPORT_SERVICENOW_PASSWORD", "servicenow-password"),
        ("SECURE_EXPORT_SERVICENOW_CLIENT_ID", "servicenow-client-id"),
        ("SECURE_EXPORT_SERVICENOW_CLIENT_SECRET", "servicenow-client-secret"),
    ]:
        assert env[variable] == {"name": variable, "secretRef": secret}
    assert env["SECURE_EXPORT_SERVICENOW_URL"]["value"] == "https://example.service-now.com"
    assert env["SECURE_EXPORT_SERVICENOW_TARGET"]["value"] == "event"
    secrets = {s["name"]: s["value"] for s in app.inputs["configuration"]["secrets"]}
    assert secrets["servicenow-password"] == PASSWORD
    assert secrets["servicenow-client-secret"] == CLIENT_SECRET
    assert "configuration" in app.secret_inputs
    plain_values = [e.get("value") for e in _container(app)["env"]]
    assert PASSWORD not in plain_values and CLIENT_SECRET not in plain_values
    assert PASSWORD not in repr(app.inputs["template"])


def test_servicenow_backend_needs_an_https_url_and_credentials():
    with pytest.raises(ValueError, match="servicenow_url must be an https:// URL"):
        declare(
            _receiver(itsm="servicenow", servicenow_url="http://x", servicenow_password="p", servicenow_username="u")
        )
    with pytest.raises(ValueError, match="needs servicenow_username and servicenow_password"):
        declare(_receiver(itsm="servicenow", servicenow_url="https://x.service-now.com", servicenow_username="u"))


def test_image_by_tag_or_digest_and_never_both():
    assert _container(one(declare(_receiver()), CONTAINER_APP))["image"] == "ghcr.io/example/secure-export:1.2.3"
    pinned = one(declare(_receiver(image_tag=None, image_digest=DIGEST)), CONTAINER_APP)
    assert _container(pinned)["image"] == f"ghcr.io/example/secure-export@{DIGEST}"
    with pytest.raises(ValueError, match="exactly one of image_tag or image_digest"):
        declare(_receiver(image_digest=DIGEST))


def test_private_registry_is_pulled_with_a_managed_identity_granted_acr_pull():
    registry = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/cr1"
    result = declare(_receiver(image_registry="cr1.azurecr.io", registry_resource_id=registry))
    app = one(result, CONTAINER_APP)
    identity = one(result, "azure-native:managedidentity:UserAssignedIdentity")
    assert app.inputs["configuration"]["registries"] == [
        {"server": "cr1.azurecr.io", "identity": identity.outputs["id"]}
    ]
    assert app.inputs["identity"]["userAssignedIdentities"] == [identity.outputs["id"]]
    grant = one(result, "azure-native:authorization:RoleAssignment")
    assert grant.inputs["scope"] == registry
    assert grant.inputs["principalId"] == identity.outputs["principalId"]
    assert grant.inputs["roleDefinitionId"] == (
        "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d"
    )
    assert "passwordSecretRef" not in repr(app.inputs)


def test_acr_pull_role_comes_from_the_registrys_subscription_and_the_app_waits_for_the_grant():
    # The registry may live in a shared subscription: the role definition id names that one, not the deployer's.
    registry = "/subscriptions/aaaa-shared/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/cr1"
    result = declare(_receiver(image_registry="cr1.azurecr.io", registry_resource_id=registry))
    grant = one(result, "azure-native:authorization:RoleAssignment")
    assert grant.inputs["roleDefinitionId"].startswith("/subscriptions/aaaa-shared/providers/Microsoft.Authorization/")
    # explicit depends_on: nothing in the app's inputs refers to the grant, yet its first revision needs it
    assert grant.name in one(result, CONTAINER_APP).depends_on


def test_resource_group_is_created_or_reused_and_url_is_https():
    created = declare(_receiver())
    assert one(created, "azure-native:resources:ResourceGroup").inputs["resourceGroupName"] == "rg-rx"
    assert created.outputs["url"].startswith("https://")
    reused = declare(_receiver(create_resource_group=False))
    assert of_type(reused, "azure-native:resources:ResourceGroup") == []
    assert reused.outputs["rg"] == "rg-rx"


@pytest.mark.parametrize("tenant", ["contoso.onmicrosoft.com", "tenant-id", ""])
def test_tenant_must_be_a_guid(tenant):
    # The receiver refuses to start with anything else: fail at plan time, not as a crash loop.
    with pytest.raises(ValueError, match="ReceiverService .*tenant_id must be the Directory \\(tenant\\) ID"):
        declare(_receiver(tenant_id=tenant))


def test_tenant_known_only_at_deployment_is_taken_as_given():
    container = _container(one(declare(_receiver(tenant_id=pulumi.Output.from_input(TENANT))), CONTAINER_APP))
    env = {e["name"]: e for e in container["env"]}
    assert env["SECURE_EXPORT_TENANT_ID"]["value"] == TENANT


def test_tenant_known_only_at_deployment_is_checked_once_known():
    with pytest.raises(Exception, match="ReceiverService .*tenant_id must be the Directory \\(tenant\\) ID"):
        declare(_receiver(tenant_id=pulumi.Output.from_input("contoso.onmicrosoft.com")))
