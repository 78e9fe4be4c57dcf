"""ReceiverService for day two: the internal ops port, credentials that rotate, alerts on the receiver itself."""

import hashlib

import pulumi
import pytest

from secure_export.components import ReceiverService
from secure_export.components.receiver_watch import QUERIES
from secure_export.contract import ENV_ITSM_REVISION, OPS_PORT
from tests.components.test_receiver_service import BASE, PASSWORD, _env, _receiver, _servicenow
from tests.support.plans import ACTION_GROUP, CONTAINER_APP, LOG_ALERT, METRIC_ALERT, declare, of_type, one

OPERATORS = ["oncall@contoso.com", "platform@contoso.com"]


def _revision(password: str) -> str:
    def program():
        ReceiverService(
            "rx",
            {
                **BASE,
                "itsm": "servicenow",
                "servicenow_url": "https://example.service-now.com",
                "servicenow_username": "svc-user",
                "servicenow_password": pulumi.Output.secret(password),
            },
        )

    app = one(declare(program), CONTAINER_APP)
    return str(_env(app)[ENV_ITSM_REVISION]["value"])


def test_the_ops_port_is_an_internal_port_mapping_and_the_receiver_is_told_to_use_it():
    app = one(declare(_receiver()), CONTAINER_APP)
    ingress = app.inputs["configuration"]["ingress"]
    assert ingress["external"] is True and ingress["targetPort"] == 8080
    assert ingress["additionalPortMappings"] == [{"external": False, "targetPort": OPS_PORT, "exposedPort": OPS_PORT}]
    assert _env(app)["SECURE_EXPORT_OPS_PORT"]["value"] == str(OPS_PORT)


def test_a_changed_credential_changes_the_template_so_azure_starts_a_new_revision():
    first, again, rotated = _revision(PASSWORD), _revision(PASSWORD), _revision(PASSWORD + "-rotated")
    assert first == again  # the same credentials: no needless revision
    assert first != rotated  # rotated: the template differs, Container Apps creates a new revision
    for value in (first, rotated):
        assert len(value) == 32 and PASSWORD not in value
    # not a plain digest of the password that a guess could be checked against
    guesses = {hashlib.sha256(p.encode()).hexdigest()[:32] for p in (PASSWORD, PASSWORD + "-rotated")}
    assert not {first, rotated} & guesses


def test_the_revision_value_keeps_the_template_readable_and_is_absent_without_credentials():
    app = one(declare(_servicenow()), CONTAINER_APP)
    assert "template" not in app.secret_inputs  # a keyed digest: nothing to mask, the plan stays readable
    assert ENV_ITSM_REVISION not in _env(one(declare(_receiver()), CONTAINER_APP))


def test_operators_get_an_e_mail_only_action_group_and_five_rules_on_the_receiver():
    result = declare(_receiver(operator_emails=OPERATORS, no_delivery_window="PT2H", refused_token_threshold=50))
    operators = one(result, ACTION_GROUP, "rx-operators")
    assert not operators.inputs.get("webhookReceivers")  # never through the receiver's own webhook
    assert [e["emailAddress"] for e in operators.inputs["emailReceivers"]] == OPERATORS
    group_id = operators.outputs["id"]
    workspace_id = one(result, "azure-native:operationalinsights:Workspace").outputs["id"]
    app = one(result, CONTAINER_APP)
    rules = {r.name: r for r in of_type(result, LOG_ALERT)}
    assert set(rules) == {f"rx-watch-{role}" for role in ("parked", "paused", "refused-tokens", "no-delivery")}
    for rule in rules.values():
        assert rule.inputs["scopes"] == [workspace_id]
        assert rule.inputs["actions"]["actionGroups"] == [group_id]
        [condition] = rule.inputs["criteria"]["allOf"]
        assert "ContainerAppName_s == 'rx'" in condition["query"]
    assert rules["rx-watch-no-delivery"].inputs["windowSize"] == "PT2H"
    assert rules["rx-watch-refused-tokens"].inputs["criteria"]["allOf"][0]["threshold"] == 50
    assert rules["rx-watch-parked"].inputs["criteria"]["allOf"][0]["query"] == QUERIES["parked"].format(app="rx")
    restarts = one(result, METRIC_ALERT, "rx-watch-restarts")
    assert restarts.inputs["scopes"] == [app.outputs["id"]]
    assert restarts.inputs["criteria"]["allOf"][0]["metricName"] == "RestartCount"
    assert restarts.inputs["actions"] == [{"actionGroupId": group_id}]


def test_no_operators_no_watch_rules_and_a_bad_window_is_refused():
    result = declare(_receiver())
    assert of_type(result, LOG_ALERT) == [] and of_type(result, METRIC_ALERT) == []
    with pytest.raises(ValueError, match="no_delivery_window must be between PT15M and P2D"):
        declare(_receiver(operator_emails=OPERATORS, no_delivery_window="PT5M"))


def test_the_watch_queries_parse_the_receiver_s_own_log_lines():
    import json
    import logging

    from receiver.observability.logs import JsonFormatter

    record = logging.LogRecord(
        "receiver.dispatch.dispatcher", logging.ERROR, __file__, 1, "inbox row parked as failed", None, None
    )
    record.event = "dispatch_parked"
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "dispatch_parked"  # what `tostring(e.event) == 'dispatch_parked'` reads
    for key, events in (
        ("parked", ["dispatch_parked"]),
        ("paused", ["dispatch_paused"]),
        ("refused-tokens", ["auth_refused", "subscription_refused"]),
    ):
        for event in events:
            assert f"'{event}'" in QUERIES[key]


def test_every_variable_the_component_sets_is_one_the_receiver_knows():
    from receiver.settings import unknown_variables

    env = _env(one(declare(_servicenow()), CONTAINER_APP))
    assert unknown_variables({name: "x" for name in env}) == []
