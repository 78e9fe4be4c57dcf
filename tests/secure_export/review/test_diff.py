"""The diff between two plan documents: operations, nested paths, secrets, made-up ids, replacements, rendering."""

import json
import re

from secure_export.review.diff import UNKNOWN, diff_plans, join
from secure_export.review.plan_side import MADE_UP_SECRET, fingerprinted
from secure_export.review.render import render_json, render_markdown, render_text
from secure_export.review.replacement import REPLACE_ON_CHANGES, forces_replacement

METRIC = "azure-native:monitor:MetricAlert"
GROUP = "azure-native:monitor:ActionGroup"
APP = "azure-native:app:ContainerApp"
RG = "azure-native:resources:ResourceGroup"
SP = "azuread:index/servicePrincipal:ServicePrincipal"


def res(typ, name, inputs, outputs=None):
    return {"type": typ, "name": name, "parent": None, "inputs": inputs, "outputs": outputs or {}}


def plan(*resources):
    return {"stack": "s", "resources": list(resources), "outputs": {}}


def rule(threshold=90, criteria=None, group_id="/subscriptions/1111/resourceGroups/rg/providers/x/actionGroups/ag-1"):
    return res(
        METRIC,
        "cpu",
        {
            "resourceGroupName": "rg",
            "ruleName": "cpu",
            "location": "global",
            "actions": [{"actionGroupId": group_id}],
            "criteria": {
                "allOf": criteria
                or [{"metricName": "Percentage CPU", "operator": "GreaterThan", "threshold": threshold}],
                "odataType": "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
            },
        },
        {"id": "/subscriptions/1111/resourceGroups/rg/providers/Microsoft.Insights/metricAlerts/cpu", "name": "cpu"},
    )


def group(rg="rg", made_up_sub="1111"):
    return res(
        GROUP,
        "ag",
        {"resourceGroupName": rg, "actionGroupName": "ag-1", "location": "Global", "enabled": True},
        {"id": f"/subscriptions/{made_up_sub}/resourceGroups/{rg}/providers/x/actionGroups/ag-1", "name": "ag-1"},
    )


def ops(result):
    return {(c.op, c.name) for c in result.changes}


def props(result, name):
    (change,) = [c for c in result.changes if c.name == name]
    return {p.path: (p.old, p.new) for p in change.properties}


def test_nothing_changed_is_no_change():
    result = diff_plans(plan(group(), rule()), plan(group(), rule()), stack="s", base="HEAD")
    assert result.changes == [] and result.unchanged == 2


def test_update_names_the_nested_path_of_a_criterion_in_a_list():
    result = diff_plans(plan(group(), rule(90)), plan(group(), rule(95)), stack="s", base="HEAD")
    assert ops(result) == {("update", "cpu")}
    assert props(result, "cpu") == {"criteria.allOf[0].threshold": (90, 95)}


def test_a_criterion_added_to_the_list_is_every_leaf_of_the_new_item():
    second = {"metricName": "Available Memory Bytes", "operator": "LessThan", "threshold": 1000}
    old = rule(criteria=[{"metricName": "Percentage CPU", "operator": "GreaterThan", "threshold": 90}])
    new = rule(criteria=[{"metricName": "Percentage CPU", "operator": "GreaterThan", "threshold": 90}, second])
    result = diff_plans(plan(group(), old), plan(group(), new), stack="s", base="HEAD")
    assert props(result, "cpu") == {
        "criteria.allOf[1].metricName": (None, "Available Memory Bytes"),
        "criteria.allOf[1].operator": (None, "LessThan"),
        "criteria.allOf[1].threshold": (None, 1000),
    }
    back = diff_plans(plan(group(), new), plan(group(), old), stack="s", base="HEAD")
    assert props(back, "cpu")["criteria.allOf[1].threshold"] == (1000, None)


def test_create_and_delete_list_every_input_leaf():
    result = diff_plans(plan(group()), plan(group(), rule()), stack="s", base="HEAD")
    assert ops(result) == {("create", "cpu")}
    created = props(result, "cpu")
    assert created["criteria.allOf[0].threshold"] == (None, 90)
    assert created["ruleName"] == (None, "cpu")
    result = diff_plans(plan(group(), rule()), plan(group()), stack="s", base="HEAD")
    assert ops(result) == {("delete", "cpu")}
    assert props(result, "cpu")["ruleName"] == ("cpu", None)


def test_no_plan_on_one_side_is_all_creates_or_all_deletes():
    assert ops(diff_plans(None, plan(group(), rule()), stack="s", base="HEAD")) == {
        ("create", "ag"),
        ("create", "cpu"),
    }
    assert ops(diff_plans(plan(group(), rule()), None, stack="s", base="HEAD")) == {
        ("delete", "ag"),
        ("delete", "cpu"),
    }


def test_made_up_ids_and_outputs_never_count_as_changes():
    # Another offline engine makes up another subscription id: the action group's id and the
    # alert's reference to it differ as strings, yet both sides mean the same resource.
    old = plan(
        group(made_up_sub="1111"), rule(group_id="/subscriptions/1111/resourceGroups/rg/providers/x/actionGroups/ag-1")
    )
    new = plan(
        group(made_up_sub="2222"), rule(group_id="/subscriptions/2222/resourceGroups/rg/providers/x/actionGroups/ag-1")
    )
    new["resources"][1]["outputs"]["id"] = "/subscriptions/2222/elsewhere/cpu"
    assert diff_plans(old, new, stack="s", base="HEAD").changes == []


def test_a_property_that_forces_replacement_makes_a_replace_and_spreads_to_its_references():
    old = plan(group(rg="rg"), rule(group_id="/subscriptions/1111/resourceGroups/rg/providers/x/actionGroups/ag-1"))
    new = plan(group(rg="rg2"), rule(group_id="/subscriptions/1111/resourceGroups/rg2/providers/x/actionGroups/ag-1"))
    result = diff_plans(old, new, stack="s", base="HEAD")
    assert ops(result) == {("replace", "ag"), ("update", "cpu")}
    assert props(result, "ag") == {"resourceGroupName": ("rg", "rg2")}
    (change,) = [c for c in result.changes if c.name == "ag"]
    assert change.properties[0].replaces
    # The alert's action points at an action group that does not exist yet: known after apply.
    assert props(result, "cpu") == {"actions[0].actionGroupId": ("${ag.id}", UNKNOWN)}


def test_a_replaced_reference_in_a_replace_triggering_property_replaces_the_dependent_too():
    rg_old = res(
        RG,
        "rg",
        {"resourceGroupName": "rg-a", "location": "westeurope"},
        {"id": "/subscriptions/1/resourceGroups/rg-a", "name": "rg-a"},
    )
    rg_new = res(
        RG,
        "rg",
        {"resourceGroupName": "rg-a", "location": "northeurope"},
        {"id": "/subscriptions/1/resourceGroups/rg-a", "name": "rg-a"},
    )
    made_up_name = res(
        "azure-native:storage:StorageAccount",
        "sa",
        {"resourceGroupName": "rg-a", "location": "westeurope"},
        {"id": "/subscriptions/1/resourceGroups/rg-a/providers/st/sa0123456789", "name": "sa0123456789"},
    )
    share = res(
        "azure-native:storage:FileShare",
        "share",
        {"resourceGroupName": "rg-a", "accountName": "sa0123456789", "shareName": "inbox"},
    )
    moved = dict(made_up_name, inputs={**made_up_name["inputs"], "location": "northeurope"})
    result = diff_plans(plan(rg_old, made_up_name, share), plan(rg_new, moved, share), stack="s", base="HEAD")
    assert ops(result) == {("replace", "rg"), ("replace", "sa"), ("replace", "share")}
    assert props(result, "share") == {"accountName": ("${sa.name}", UNKNOWN)}


def test_location_spelling_is_not_a_change_but_a_new_region_replaces():
    old = plan(res(RG, "rg", {"resourceGroupName": "rg-a", "location": "westeurope"}))
    same = plan(res(RG, "rg", {"resourceGroupName": "rg-a", "location": "West Europe"}))
    moved = plan(res(RG, "rg", {"resourceGroupName": "rg-a", "location": "northeurope"}))
    assert diff_plans(old, same, stack="s", base="HEAD").changes == []
    assert ops(diff_plans(old, moved, stack="s", base="HEAD")) == {("replace", "rg")}


def test_a_flag_that_became_a_number_is_a_change_and_absent_equals_null():
    old = plan(res(GROUP, "ag", {"enabled": True, "tags": None}))
    new = plan(res(GROUP, "ag", {"enabled": 1}))
    assert props(diff_plans(old, new, stack="s", base="HEAD"), "ag") == {"enabled": (True, 1)}


def test_keys_that_are_not_plain_names_are_quoted_in_paths():
    assert join("tags", "app.kubernetes.io/name") == 'tags["app.kubernetes.io/name"]'
    assert join("tags", "cost-center") == "tags.cost-center"
    old = plan(res(GROUP, "ag", {"tags": {"app.kubernetes.io/name": "a"}}))
    new = plan(res(GROUP, "ag", {"tags": {"app.kubernetes.io/name": "b"}}))
    assert props(diff_plans(old, new, stack="s", base="HEAD"), "ag") == {'tags["app.kubernetes.io/name"]': ("a", "b")}


def _app(password, salt=b"k" * 16):
    raw = {
        "configuration": {"secrets": [{"name": "servicenow-password", "value": password}]},
        "sharedKey": "engine-key",
    }
    masked = {
        "configuration": {"secrets": [{"name": "servicenow-password", "value": "[secret]"}]},
        "sharedKey": "[secret]",
    }
    inputs = fingerprinted(masked, raw, salt, frozenset({password}))
    return res(APP, "app", inputs)


def test_secrets_are_compared_but_shown_as_secret():
    changed = diff_plans(plan(_app("v1:old-ciphertext")), plan(_app("v1:new-ciphertext")), stack="s", base="HEAD")
    assert props(changed, "app") == {"configuration.secrets[0].value": ("[secret]", "[secret]")}
    assert diff_plans(plan(_app("v1:same")), plan(_app("v1:same")), stack="s", base="HEAD").changes == []
    for text in (render_json(changed), render_text(changed), render_markdown(changed)):
        assert "ciphertext" not in text and "[secret:" not in text
        assert "[secret]" in text


def test_key_material_the_engine_made_up_is_one_token_on_both_sides():
    inputs = _app("v1:x")["inputs"]
    assert inputs["sharedKey"] == MADE_UP_SECRET
    assert inputs["configuration"]["secrets"][0]["value"].startswith("[secret:")
    assert inputs["configuration"]["secrets"][0]["value"] != MADE_UP_SECRET


def _mixed():
    return diff_plans(
        plan(group(), rule(90), res(SP, "old-sp", {"clientId": "c"})),
        plan(
            group(rg="rg|pipe"),
            rule(95, group_id="/subscriptions/1111/resourceGroups/rg|pipe/providers/x/actionGroups/ag-1"),
            res(SP, "new-sp", {"clientId": "c"}),
        ),
        stack="prod",
        base="origin/main",
    )


def test_json_is_the_contract():
    document = json.loads(render_json(_mixed()))
    assert set(document) == {"stack", "base", "changes"}
    assert document["stack"] == "prod" and document["base"] == "origin/main"
    by_name = {c["name"]: c for c in document["changes"]}
    assert {c["op"] for c in document["changes"]} == {"create", "update", "replace", "delete"}
    for change in document["changes"]:
        assert set(change) == {"op", "type", "name", "properties"}
        for prop in change["properties"]:
            assert set(prop) == {"path", "old", "new"}
    assert {"path": "criteria.allOf[0].threshold", "old": 90, "new": 95} in by_name["cpu"]["properties"]


def test_markdown_is_a_summary_line_then_one_collapsible_section_per_resource():
    result = _mixed()
    text = render_markdown(result, "0123456789abcdef")
    lines = text.splitlines()
    assert lines[0] == "<!-- secure-export-diff stack=prod -->"
    assert lines[1].startswith("### ") and "`prod`" in lines[1]
    assert lines[3].startswith("**1 to create, 1 to update, 1 to replace, 1 to delete; 0 unchanged.**")
    assert "origin/main (0123456789ab)" in lines[3]
    assert text.count("<details>") == text.count("</details>") == len(result.changes) == 4
    sections = re.findall(r"<details>\n<summary>(.*?)</summary>\n\n(.*?)\n\n</details>", text, re.S)
    assert len(sections) == 4
    for summary, body in sections:
        assert re.search(r"<b>(create|update|replace|delete)</b>", summary)
        rows = body.splitlines()
        assert rows[:2] == ["| property | old | new |", "| --- | --- | --- |"]
        # Three cells per row, whatever the values hold.
        assert all(len(re.split(r"(?<!\\)\|", row)) == 5 for row in rows[2:])
    replace = next(s for s in sections if "<b>replace</b>" in s[0])
    assert "forced by resourceGroupName" in replace[0]
    # A pipe inside a value must not end the table cell.
    assert '`"rg\\|pipe"`' in replace[1]
    assert "(forces replacement)" in replace[1]


def test_markdown_without_changes_says_so():
    result = diff_plans(plan(group()), plan(group()), stack="dev", base="HEAD")
    text = render_markdown(result)
    assert "**No changes: 1 resources unchanged.**" in text and "<details>" not in text


def test_text_looks_like_pulumi_preview_diff():
    text = render_text(_mixed(), "0123456789abcdef")
    assert (
        "  ~  azure-native:monitor:MetricAlert: cpu (update)\n"
        '      ~ actions[0].actionGroupId: "${ag.id}" => "output<string>"\n'
        "      ~ criteria.allOf[0].threshold: 90 => 95\n"
    ) in text
    assert '      ~ resourceGroupName: "rg" => "rg|pipe"  [forces replacement]' in text
    assert "  +  azuread:index/servicePrincipal:ServicePrincipal: new-sp (create)" in text
    assert "  -  azuread:index/servicePrincipal:ServicePrincipal: old-sp (delete)" in text
    assert text.rstrip().endswith("4 changes. 0 unchanged")


def test_replace_table_has_its_documented_properties():
    assert forces_replacement(GROUP, "resourceGroupName")
    assert forces_replacement(GROUP, "location")
    assert forces_replacement(METRIC, "ruleName")
    assert not forces_replacement(METRIC, "criteria.allOf[0].threshold")
    assert forces_replacement("azure-native:authorization:RoleAssignment", "principalId")
    assert not forces_replacement("azure-native:authorization:RoleAssignment", "location")
    assert forces_replacement("azure-native:storage:StorageAccount", "isHnsEnabled")
    assert forces_replacement(SP, "clientId") and not forces_replacement(SP, "owners[0]")
    assert forces_replacement("azuread:index/appRoleAssignment:AppRoleAssignment", "principalObjectId")
    assert not forces_replacement("azuread:index/application:Application", "identifierUris[0]")
    # A type outside the table still replaces on its resource group and location.
    assert forces_replacement("azure-native:web:WebApp", "resourceGroupName")
    assert not forces_replacement("secure-export:index:SecureExport", "anything")
    assert all(names for names in REPLACE_ON_CHANGES.values())


def test_a_changed_query_is_also_shown_as_a_line_diff():
    query = 'AppRequests\n| where ResultCode startswith "5"\n| summarize Errors = count() by _ResourceId\n'
    old = plan(res("azure-native:monitor:ScheduledQueryRule", "errors", {"criteria": {"allOf": [{"query": query}]}}))
    new_query = query.replace('"5"', '"4"')
    new = plan(
        res("azure-native:monitor:ScheduledQueryRule", "errors", {"criteria": {"allOf": [{"query": new_query}]}})
    )
    result = diff_plans(old, new, stack="s", base="HEAD")
    text = render_text(result)
    assert '          -| where ResultCode startswith "5"\n          +| where ResultCode startswith "4"\n' in text
    markdown = render_markdown(result)
    assert '```diff\n@@ -1,3 +1,3 @@\n AppRequests\n-| where ResultCode startswith "5"\n+| where ResultCode' in markdown
    # The table row stays one line.
    assert '| `criteria.allOf[0].query` | `"AppRequests\\n\\| where' in markdown
