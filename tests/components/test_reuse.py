import re
from pathlib import Path

from secure_export.plan.offline import FakeCloud
from tests.support.plans import (
    ACTION_GROUP,
    APPLICATION,
    METRIC_ALERT,
    declare,
    one,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "infrastructure.md"


def _documented_example() -> str:
    section = DOC.read_text().split("## Reusing the components", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_documented_example_runs_in_another_project_and_wires_the_secure_webhook():
    source = _documented_example().replace("<sub>", "11111111-1111-4111-8111-111111111111")
    result = declare(lambda: exec(compile(source, str(DOC), "exec"), {}), project="other-team", stack="staging")
    app = one(result, APPLICATION)
    (webhook,) = one(result, ACTION_GROUP).inputs["webhookReceivers"]
    assert webhook["useAadAuth"] is True
    assert webhook["objectId"] == app.outputs["objectId"]
    assert app.inputs["identifierUris"] == [f"api://{FakeCloud('staging').tenant_id}/other-team-staging"]
    assert one(result, METRIC_ALERT).inputs["actions"] == [{"actionGroupId": one(result, ACTION_GROUP).outputs["id"]}]
    assert result.outputs["webhookUrl"] == "https://itsm-receiver.example.net/api/alerts"


SN_DOC = DOC.parent / "servicenow-event-management.md"
SN_EM_URL = "https://contoso.service-now.com/api/sn_em_connector/em/inbound_event?source=azuremonitor"


def test_documented_direct_mode_example_posts_to_servicenow_with_the_identity():
    section = SN_DOC.read_text().split("## From your own Pulumi program", 1)[1]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    source = source.replace("<sub>", "11111111-1111-4111-8111-111111111111")
    result = declare(lambda: exec(compile(source, str(SN_DOC), "exec"), {}), project="itom-team", stack="prod")
    app = one(result, APPLICATION)
    (webhook,) = one(result, ACTION_GROUP).inputs["webhookReceivers"]
    assert webhook["serviceUri"] == SN_EM_URL
    assert webhook["useAadAuth"] is True and webhook["useCommonAlertSchema"] is True
    assert webhook["objectId"] == app.outputs["objectId"]
    assert webhook["tenantId"] == result.outputs["tenantId"]
    assert app.inputs["api"]["requestedAccessTokenVersion"] == 2
    assert result.outputs["clientId"] == app.outputs["clientId"]
    assert result.outputs["accessTokenVersion"] == 2
    assert not [r for r in result.resources if r.type.startswith("azure-native:app:")]
