"""Stack config ``secure-export:routing``: validated with the receiver's model at plan time, delivered as a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from secure_export.components import ReceiverService
from secure_export.routing import load_routing
from tests.components.test_receiver_service import BASE
from tests.secure_export.stack.test_config import _dev, _problems, _write
from tests.support.paths import REPO_ROOT
from tests.support.plans import CONTAINER_APP, declare, one

ROUTING = {
    "routes": [
        {
            "match": {"severity": ["Sev0", "Sev1"], "resourceGroup": ["rg-shop-prod"]},
            "set": {"assignmentGroup": "Shop On-Call", "impact": 1, "urgency": 1},
        },
    ],
    "default": {"assignmentGroup": "Azure Monitor Triage"},
}


def test_every_routing_problem_is_named_with_its_key_path_at_plan_time(tmp_path: Path) -> None:
    document = _dev()
    document["config"]["secure-export:routing"] = {
        "routes": [
            {"match": {"severity": ["Sev1"]}, "set": {"assignmentGroup": "Fine"}},
            {"match": {"severity": ["Sev9"], "colour": "red"}, "set": {"urgency": 7}},
        ],
        "default": {"fields": {"state": "7"}},
    }
    problems = _problems(_write(tmp_path, "bad", document))
    joined = "\n".join(problems)
    assert "secure-export:routing.routes[1].match.severity: unknown severity 'Sev9'" in joined
    assert "secure-export:routing.routes[1].match.colour: unknown key" in joined
    assert "secure-export:routing.routes[1].set.urgency" in joined
    assert "secure-export:routing.default.fields: 'state' is set by the backend" in joined
    assert not any("routes[0]" in line for line in problems)


def _app(routing: str | None = None, **extra: object) -> dict:
    def program() -> None:
        ReceiverService("rx", {**BASE, **({"routing": routing} if routing else {}), **extra})

    return one(declare(program), CONTAINER_APP).inputs


def test_the_routing_file_reaches_the_container_as_a_mounted_secret_file(tmp_path: Path) -> None:
    text = json.dumps(ROUTING)
    inputs = _app(text, reopen_window="PT30M", stateless_ttl="P1D")
    [secret] = [s for s in inputs["configuration"]["secrets"] if s["name"] == "routing-file"]
    container = inputs["template"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SECURE_EXPORT_ROUTING"] == "/etc/secure-export/routing.json"
    assert (env["SECURE_EXPORT_REOPEN_WINDOW"], env["SECURE_EXPORT_STATELESS_TTL"]) == ("PT30M", "P1D")
    assert all(len(str(e.get("value") or "")) < 200 for e in container["env"])  # not a giant env value
    [volume] = [v for v in inputs["template"]["volumes"] if v["name"] == "routing"]
    assert volume["storageType"] == "Secret"
    assert volume["secrets"] == [{"secretRef": "routing-file", "path": "routing.json"}]
    assert {"volumeName": "routing", "mountPath": "/etc/secure-export"} in container["volumeMounts"]
    # What the container reads is a routing file the receiver loads.
    path = tmp_path / "routing.json"
    path.write_text(secret["value"])
    assert load_routing(str(path)).default.assignment_group == "Azure Monitor Triage"


def test_without_routing_nothing_is_mounted() -> None:
    inputs = _app()
    assert [v["name"] for v in inputs["template"]["volumes"]] == ["inbox"]
    assert not any(e["name"] == "SECURE_EXPORT_ROUTING" for e in inputs["template"]["containers"][0]["env"])


def test_the_component_refuses_an_invalid_routing_file_naming_the_key() -> None:
    bad = json.dumps({"routes": [{"match": {"severity": "Sev8"}, "set": {}}]})
    with pytest.raises(Exception, match=r"routing: routes\[0\]\.match\.severity: unknown severity 'Sev8'"):
        _app(bad)


def test_the_prod_stack_routes_and_its_plan_mounts_the_file() -> None:
    from secure_export.stack.loading import load_stack_file

    repo = REPO_ROOT
    loaded = load_stack_file(repo / "stacks" / "Pulumi.prod.yaml")
    config = getattr(loaded, "config", loaded)
    assert config.routing is not None and config.routing.routes
    args = config.to_args()
    assert json.loads(args["receiver"]["routing"])["default"]["assignmentGroup"]
    assert yaml.safe_load((repo / "stacks" / "Pulumi.prod.yaml").read_text())  # still plain YAML


def test_routing_without_a_receiver_is_refused(tmp_path: Path) -> None:
    document = _dev()
    config = document["config"]
    config.pop("secure-export:receiver", None)
    config["secure-export:directEndpoint"] = {
        "tool": "servicenow-em",
        "url": "https://acme.service-now.com/api/sn_em_connector/em/inbound_event?source=azuremonitor",
    }
    config["secure-export:routing"] = ROUTING
    problems = "\n".join(_problems(_write(tmp_path, "direct", document)))
    assert "secure-export:routing configure the bundled receiver" in problems


def test_with_postgresql_the_routing_file_is_mounted_alone_and_still_starts_a_new_revision() -> None:
    from secure_export.contract import ENV_ITSM_REVISION

    def revision(inputs: dict) -> str:
        env = {e["name"]: e.get("value") for e in inputs["template"]["containers"][0]["env"]}
        return str(env[ENV_ITSM_REVISION])

    first = _app(json.dumps(ROUTING), database={"kind": "postgresql"})
    assert [v["name"] for v in first["template"]["volumes"]] == ["routing"]  # no inbox share with PostgreSQL
    assert [m["volumeName"] for m in first["template"]["containers"][0]["volumeMounts"]] == ["routing"]
    changed = dict(ROUTING, default={"assignmentGroup": "Another Group"})
    again = _app(json.dumps(ROUTING), database={"kind": "postgresql"})
    other = _app(json.dumps(changed), database={"kind": "postgresql"})
    assert revision(first) == revision(again)
    assert revision(first) != revision(other)  # keyed with the workspace key, the routing file counts
