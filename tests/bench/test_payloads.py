"""The load generator's alert bodies: realistic size, valid common alert schema, distinct ids."""

import json

from bench.payloads import alert_id, instance_ids, templates


def test_bodies_are_common_schema_between_3_and_8_kb() -> None:
    for template in templates():
        body = template.render("6c1f7a8e-1b2c-4d3e-8f90-a1b2c3d4e5f6")
        assert 3 * 1024 <= len(body) <= 8 * 1024
        document = json.loads(body)
        assert document["schemaId"] == "azureMonitorCommonAlertSchema"
        essentials = document["data"]["essentials"]
        assert essentials["alertId"] == alert_id("6c1f7a8e-1b2c-4d3e-8f90-a1b2c3d4e5f6")
        assert essentials["monitorCondition"] == "Fired"


def test_resolved_condition_is_rendered() -> None:
    document = json.loads(templates()[0].render("x", condition="Resolved"))
    assert document["data"]["essentials"]["monitorCondition"] == "Resolved"


def test_instance_ids_are_distinct_and_seeded() -> None:
    first = instance_ids(1000, seed=3)
    assert len(set(first)) == 1000
    assert instance_ids(1000, seed=3) == first
    assert not set(first) & set(instance_ids(1000, seed=4))
