import re
from pathlib import Path

from components.offline import FakeCloud
from tests.components.support import (
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
