import uuid

import pulumi
import pytest

from secure_export.components import SecureWebhookIdentity
from secure_export.plan.offline import FakeCloud
from secure_export.stack.validation import stable_role_id
from tests.support.plans import (
    APP_ROLE_ASSIGNMENT,
    APPLICATION,
    AZNS,
    SERVICE_PRINCIPAL,
    declare,
    of_type,
    one,
)


def _identity(**args):
    def program():
        ident = SecureWebhookIdentity("rx", {"display_name": "receiver", **args})
        pulumi.export("objectId", ident.application_object_id)
        pulumi.export("clientId", ident.client_id)
        pulumi.export("identifierUri", ident.identifier_uri)
        pulumi.export("tenantId", ident.tenant_id)
        pulumi.export("roleId", ident.role_id)
        pulumi.export("spObjectId", ident.service_principal_object_id)
        pulumi.export("deployer", ident.deployer_object_id)

    return program


def _service_principals(result):
    sps = {r.inputs["clientId"]: r for r in of_type(result, SERVICE_PRINCIPAL)}
    app = one(result, APPLICATION)
    return app, sps[app.outputs["clientId"]], sps[AZNS]


def test_application_lists_the_deployer_as_owner_and_keeps_extra_owners():
    result = declare(_identity(owner_object_ids=["owner-2"]))
    app = one(result, APPLICATION)
    assert app.inputs["owners"][0] == result.outputs["deployer"]
    assert "owner-2" in app.inputs["owners"]
    assert app.parent == "rx"


def test_app_role_is_for_applications_only_enabled_and_named_for_action_groups():
    app = one(declare(_identity()), APPLICATION)
    (role,) = app.inputs["appRoles"]
    assert role["allowedMemberTypes"] == ["Application"]
    assert role["enabled"] is True
    assert role["value"] == "ActionGroupsSecureWebhook"
    uuid.UUID(role["id"])


def test_role_id_is_stable_across_runs_and_differs_across_stacks():
    first = one(declare(_identity(), stack="prod"), APPLICATION).inputs["appRoles"][0]["id"]
    again = one(declare(_identity(), stack="prod"), APPLICATION).inputs["appRoles"][0]["id"]
    other = one(declare(_identity(), stack="dev"), APPLICATION).inputs["appRoles"][0]["id"]
    assert first == again == stable_role_id("secure-export", "prod")
    assert other != first


def test_identifier_uri_defaults_to_tenant_project_and_stack_and_can_be_configured():
    # api://<tenant id>/<string> passes Entra's uriAdditionWithoutUniqueTenantIdentifier restriction.
    default = declare(_identity(), stack="qa")
    tenant = FakeCloud("qa").tenant_id
    assert one(default, APPLICATION).inputs["identifierUris"] == [f"api://{tenant}/secure-export-qa"]
    assert default.outputs["identifierUri"] == f"api://{tenant}/secure-export-qa"
    custom = declare(_identity(identifier_uri="api://rx.contoso.com"))
    assert one(custom, APPLICATION).inputs["identifierUris"] == ["api://rx.contoso.com"]


def test_access_token_version_defaults_to_1_allows_2_and_rejects_others():
    assert one(declare(_identity()), APPLICATION).inputs["api"]["requestedAccessTokenVersion"] == 1
    assert (
        one(declare(_identity(access_token_version=2)), APPLICATION).inputs["api"]["requestedAccessTokenVersion"] == 2
    )
    with pytest.raises(ValueError, match="access_token_version must be 1 or 2"):
        declare(_identity(access_token_version=3))


def test_service_principals_require_assignment_and_reuse_the_azns_principal():
    app, sp, azns = _service_principals(declare(_identity()))
    assert sp.inputs["clientId"] == app.outputs["clientId"]
    assert sp.inputs["appRoleAssignmentRequired"] is True
    assert azns.inputs["useExisting"] is True


def test_the_tenant_wide_azns_principal_survives_destroying_a_stack():
    # Every secure webhook in the tenant depends on it: `pulumi destroy` of one stack must not delete it.
    app, sp, azns = _service_principals(declare(_identity()))
    assert azns.retain_on_delete is True
    assert sp.retain_on_delete is False


def test_exactly_one_role_assignment_grants_the_role_to_azns_on_the_apps_principal():
    result = declare(_identity())
    app, sp, azns = _service_principals(result)
    (assignment,) = of_type(result, APP_ROLE_ASSIGNMENT)
    assert assignment.inputs["principalObjectId"] == azns.outputs["objectId"]
    assert assignment.inputs["resourceObjectId"] == sp.outputs["objectId"]
    assert assignment.inputs["appRoleId"] == app.inputs["appRoles"][0]["id"]


def test_outputs_name_the_application_and_role():
    result = declare(_identity())
    app, sp, _ = _service_principals(result)
    assert result.outputs["objectId"] == app.outputs["objectId"]
    assert result.outputs["clientId"] == app.outputs["clientId"]
    assert result.outputs["roleId"] == app.inputs["appRoles"][0]["id"]
    assert result.outputs["spObjectId"] == sp.outputs["objectId"]
    uuid.UUID(result.outputs["tenantId"])


def test_display_name_is_required():
    with pytest.raises(ValueError, match="display_name is required"):
        declare(lambda: SecureWebhookIdentity("rx", {}))
