"""The contracts of docs/design.md, held black-box: the real console script and a real ``serve`` child.

One row of a contract table per test. Everything goes through ``secure-export`` subprocesses and
HTTP on loopback; the only project code imported is the local Azure AD stand-in that mints tokens.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.demo.local_issuer import LocalIssuer, generate_signing_key
from tests.support import tokens

REPO = Path(__file__).resolve().parents[1]
SUBSCRIPTION = "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"
OTHER_SUBSCRIPTION = "bbbb0b0b-cc1c-dd2d-ee3e-ffffff4f4f4f"
ROLE = "ActionGroupsSecureWebhook"

_ALERT: dict[str, Any] = {
    "schemaId": "azureMonitorCommonAlertSchema",
    "data": {
        "essentials": {
            "alertRule": "cpu-high",
            "severity": "Sev1",
            "signalType": "Metric",
            "monitorCondition": "Fired",
            "monitoringService": "Platform",
            "firedDateTime": "2026-11-26T06:00:00.1234567Z",
            "description": "CPU above 90%",
            "essentialsVersion": "1.0",
            "alertContextVersion": "1.0",
        },
        "alertContext": {},
        "customProperties": None,
    },
}


def _cli() -> list[str]:
    """The installed console script (``make install``), else the same entry point via the module."""
    script = Path(sys.executable).with_name("secure-export")
    return [str(script)] if script.exists() else [sys.executable, "-m", "secure_export.cli"]


def _env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SECURE_EXPORT_")}
    env.update(values)
    return env


def alert(
    name: str, condition: str = "Fired", *, subscription: str = SUBSCRIPTION, rg: str = "rg-shop-prod"
) -> dict[str, Any]:
    body = copy.deepcopy(_ALERT)
    essentials = body["data"]["essentials"]
    essentials["alertId"] = f"/subscriptions/{subscription}/providers/Microsoft.AlertsManagement/alerts/{name}"
    essentials["monitorCondition"] = condition
    essentials["alertTargetIDs"] = [
        f"/subscriptions/{subscription}/resourcegroups/{rg}/providers/microsoft.compute/virtualmachines/vm-{name}"
    ]
    essentials["configurationItems"] = [f"vm-{name}"]
    if condition == "Resolved":
        essentials["resolvedDateTime"] = "2026-11-26T06:10:00Z"
    return body


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_cli(), *args], capture_output=True, text=True, timeout=120, env=env or _env(), cwd=cwd)


def refused_at_start(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """``serve --port 0`` expected to refuse its configuration: (exit status, stderr).

    A server that starts fails the test.
    """
    process = subprocess.Popen(
        [*_cli(), "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    for line in process.stderr:
        lines.append(line)
        if '"event": "listening"' in line:
            process.terminate()
            process.wait(timeout=20)
            raise AssertionError("serve started instead of refusing its configuration:\n" + "".join(lines)[-2000:])
    return process.wait(timeout=20), "".join(lines)


class Receiver:
    """A ``secure-export serve --port 0`` child; ``url`` from its ``listening`` log line."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [*_cli(), "serve", "--host", "127.0.0.1", "--port", "0"],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self._url: str | None = None
        self.ops_url: str | None = None
        self._seen = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._seen.wait(60), "serve did not log 'listening':\n" + "".join(self.lines)[-2000:]
        assert self._url, "serve ended before listening:\n" + "".join(self.lines)[-2000:]
        self.url: str = self._url

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == "ops_listening":
                self.ops_url = str(record["url"])
            if isinstance(record, dict) and record.get("event") == "listening" and self._url is None:
                self._url = str(record["url"])
                self._seen.set()
        self._seen.set()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as local:
        yield local


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("contracts")


ROUTING = {
    "routes": [
        {
            "match": {"severity": ["Sev0", "Sev1"], "resourceGroup": ["RG-SHOP-PROD"]},
            "set": {"assignmentGroup": "Shop On-Call", "category": "Hardware", "impact": 1, "urgency": 1},
        },
        {"match": {"customProperties": {"team": "identity"}}, "set": {"assignmentGroup": "Identity Team"}},
        {"match": {"alertRule": "keyvault-*"}, "set": {"assignmentGroup": "Payments Platform"}},
    ],
    "default": {"assignmentGroup": "Azure Monitor Triage"},
}


@pytest.fixture(scope="module")
def receiver(issuer: LocalIssuer, workdir: Path) -> Iterator[Receiver]:
    """The module's receiver: trusts ``issuer``, one allowed subscription, a routing file.

    Its keys are refetched at most every 300 s.
    """
    routing = workdir / "routing.json"
    routing.write_text(json.dumps(ROUTING))
    env = _env(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES=",".join(issuer.audiences),
        SECURE_EXPORT_JWKS_URI=issuer.jwks_uri,
        SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS=SUBSCRIPTION,
        SECURE_EXPORT_DB=str(workdir / "receiver.db"),
        SECURE_EXPORT_ROUTING=str(routing),
        SECURE_EXPORT_JWKS_MIN_REFETCH_SECONDS="300",
    )
    server = Receiver(env, workdir)
    try:
        yield server
    finally:
        server.stop()


def post(
    receiver: Receiver,
    body: Any,
    token: str | None,
    *,
    content_type: str = "application/json",
    raw: bytes | None = None,
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(f"{receiver.url}/api/alerts", content=content, headers=headers, timeout=10)


def assert_error_body(response: httpx.Response) -> None:
    """``{"error": "<code>", "detail": "<text>"}``, JSON, no stack trace."""
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    assert "Traceback" not in response.text


def items(workdir: Path) -> list[dict[str, Any]]:
    result = run("work-items", "--json", "--db", str(workdir / "receiver.db"))
    assert result.returncode == 0, result.stderr
    listed: list[dict[str, Any]] = json.loads(result.stdout)
    return listed


def wait_for(workdir: Path, alert_name: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        found = [item for item in items(workdir) if any(a.endswith(f"/{alert_name}") for a in item["alert_ids"])]
        if found and found[0]["state"] == state:
            return found[0]
        assert time.monotonic() < deadline, f"{alert_name} never became {state}: {found}"
        time.sleep(0.2)


# --- commands -----------------------------------------------------------------------------------


def test_version_prints_the_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("secure-export "), result


@pytest.mark.parametrize(
    "command",
    ["serve", "demo", "work-items", "cmdb", "plan", "diff", "trace", "replay", "discard"],
)
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_help_lists_the_contract_flags() -> None:
    usage = run("--help").stdout
    for text in (
        "serve [--host H] [--port P]",
        "demo",
        "work-items [--json]",
        "cmdb [--json]",
        "plan --stack NAME",
        "--policy",
        "diff --stack NAME [--base REV] [--json|--markdown] [--exit-code]",
        "trace ALERT_ID",
        "replay (--id N ... | --all)",
        "discard --id N ... --reason TEXT",
        "--version",
    ):
        assert text in usage, text


def test_demo_exits_zero_and_prints_items(tmp_path: Path) -> None:
    result = run("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "INC0000001" in result.stdout


@pytest.fixture(scope="module")
def plan_dev() -> dict[str, Any]:
    result = run("plan", "--stack", "dev", "--json")
    assert result.returncode == 0, result.stderr
    plan: dict[str, Any] = json.loads(result.stdout)
    return plan


def test_plan_json_shape(plan_dev: dict[str, Any]) -> None:
    assert plan_dev["stack"] == "dev" and plan_dev["offline"] is True and isinstance(plan_dev["outputs"], dict)
    names = {resource["name"] for resource in plan_dev["resources"]}
    for resource in plan_dev["resources"]:
        assert set(resource) >= {"type", "name", "parent", "inputs", "outputs", "dependsOn"}, resource
        assert resource["parent"] is None or isinstance(resource["parent"], str)
        assert set(resource["dependsOn"]) <= names, resource["dependsOn"]
    groups = [r for r in plan_dev["resources"] if r["type"] == "azure-native:monitor:ActionGroup"]
    apps = [r for r in plan_dev["resources"] if r["type"] == "azuread:index/application:Application"]
    assert groups and apps
    receiver_hook = groups[0]["inputs"]["webhookReceivers"][0]
    assert receiver_hook["useAadAuth"] is True and receiver_hook["useCommonAlertSchema"] is True
    assert receiver_hook["objectId"] == apps[0]["outputs"]["objectId"]
    assert apps[0]["name"] in groups[0]["dependsOn"]


def test_plan_secrets_print_as_secret_and_fake_ids_are_stable(plan_dev: dict[str, Any]) -> None:
    assert '"[secret]"' in json.dumps(plan_dev)
    again = json.loads(run("plan", "--stack", "dev", "--json").stdout)
    assert again == plan_dev
    ids = [r["outputs"]["id"] for r in plan_dev["resources"] if "id" in r["outputs"]]
    assert len(ids) == len(set(ids))


def test_plan_unknown_stack_fails_with_a_clear_message() -> None:
    result = run("plan", "--stack", "no-such-stack")
    assert result.returncode != 0 and "no-such-stack" in result.stderr and "Traceback" not in result.stderr


def test_plan_invalid_config_names_the_key(tmp_path: Path) -> None:
    shutil.copytree(REPO, tmp_path / "repo", ignore=shutil.ignore_patterns(".venv", ".git", "*.db", "__pycache__"))
    stack = tmp_path / "repo" / "stacks" / "Pulumi.dev.yaml"
    stack.write_text(stack.read_text().replace("secure-export:actionGroup:", "secure-export:actionGroupp:", 1))
    result = run("plan", "--stack", "dev", cwd=tmp_path / "repo")
    assert result.returncode != 0 and "actionGroupp" in result.stderr and "Traceback" not in result.stderr


def test_plan_policy_passes_the_shipped_stack() -> None:
    result = run("plan", "--stack", "dev", "--policy")
    assert result.returncode == 0, result.stderr


def test_direct_mode_outputs_for_the_tools_side() -> None:
    result = run("plan", "--stack", "itom", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert {"tenantId", "clientId", "identifierUri"} <= set(plan["outputs"])
    assert not [r for r in plan["resources"] if r["type"].startswith("azure-native:app:")]
    hook = next(r for r in plan["resources"] if r["type"] == "azure-native:monitor:ActionGroup")["inputs"][
        "webhookReceivers"
    ][0]
    assert hook["serviceUri"].startswith("https://") and hook["useAadAuth"] is True


def test_diff_json_shape_and_exit_code() -> None:
    result = run("diff", "--stack", "dev", "--json", "--exit-code")
    assert result.returncode in (0, 1), result.stderr
    diff = json.loads(result.stdout)
    assert diff["stack"] == "dev" and diff["base"] == "HEAD" and isinstance(diff["changes"], list)
    for change in diff["changes"]:
        assert change["op"] in ("create", "update", "replace", "delete")
        assert {"type", "name", "properties"} <= set(change)
    assert (result.returncode == 1) == bool(diff["changes"])


# --- environment --------------------------------------------------------------------------------


def test_serve_requires_tenant_and_audiences(tmp_path: Path) -> None:
    result = run("serve", "--port", "0", cwd=tmp_path)
    assert result.returncode != 0
    assert "SECURE_EXPORT_TENANT_ID" in result.stderr and "SECURE_EXPORT_AUDIENCES" in result.stderr


def test_serve_refuses_a_database_url_that_is_not_postgresql(tmp_path: Path, issuer: LocalIssuer) -> None:
    env = _env(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES="api://x",
        SECURE_EXPORT_DB="mysql://db.example/secure",
    )
    result = run("serve", "--port", "0", env=env, cwd=tmp_path)
    assert result.returncode != 0 and "SECURE_EXPORT_DB" in result.stderr


def test_invalid_routing_file_exits_2_naming_rule_and_key(tmp_path: Path, issuer: LocalIssuer) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        "routes:\n  - match: {severity: [Sev1]}\n    set: {assignmentGroup: A}\n"
        "  - match: {colour: [red]}\n    set: {assignmentGroup: B}\n"
    )
    env = _env(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES="api://x",
        SECURE_EXPORT_JWKS_URI=issuer.jwks_uri,
        SECURE_EXPORT_DB=str(tmp_path / "x.db"),
        SECURE_EXPORT_ROUTING=str(routing),
    )
    status, stderr = refused_at_start(env, tmp_path)
    assert status == 2, stderr
    assert "colour" in stderr and ("routes[1]" in stderr or "rule 2" in stderr), stderr


def test_defaults_db_in_cwd_and_unknown_kid_is_401_once_refetch_allowed(tmp_path: Path, issuer: LocalIssuer) -> None:
    env = _env(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES=",".join(issuer.audiences),
        SECURE_EXPORT_JWKS_URI=issuer.jwks_uri,
        SECURE_EXPORT_JWKS_MIN_REFETCH_SECONDS="0",
    )
    server = Receiver(env, tmp_path)
    try:
        assert (tmp_path / "secure-export.db").exists()
        forger = generate_signing_key()
        token = issuer.sign(issuer.claims(), {"kid": forger.kid, "typ": "JWT"}, key=forger)
        response = post(server, alert("kid"), token)
        assert response.status_code == 401, response.text
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        # default SECURE_EXPORT_ALLOWED_CALLERS is the AzNS app only
        assert post(server, alert("caller"), issuer.mint(appid=tokens.OTHER_DAEMON_APP)).status_code == 403
    finally:
        server.stop()


# --- HTTP ---------------------------------------------------------------------------------------


def test_202_once_stored_and_a_repeat_changes_nothing(receiver: Receiver, issuer: LocalIssuer, workdir: Path) -> None:
    first = post(receiver, alert("dup"), issuer.mint())
    assert first.status_code == 202, first.text
    assert post(receiver, alert("dup"), issuer.mint(version=2)).status_code == 202
    item = wait_for(workdir, "dup", "New")
    assert item["occurrences"] == 1 and len(item["alert_ids"]) == 1
    assert len([i for i in items(workdir) if any(a.endswith("/dup") for a in i["alert_ids"])]) == 1


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda i: None, id="no-token"),
        pytest.param(lambda i: "not-a-jwt", id="malformed"),
        pytest.param(tokens.flipped_signature, id="bad-signature"),
        pytest.param(lambda i: i.mint(iss="https://sts.windows.net/" + tokens.OTHER_TENANT + "/"), id="wrong-iss"),
        pytest.param(lambda i: i.mint(aud="api://someone-else"), id="wrong-aud"),
        pytest.param(lambda i: i.mint(now=time.time() - 7200, lifetime=600), id="expired"),
        pytest.param(lambda i: i.mint(nbf=int(time.time()) + 3600), id="not-yet-valid"),
        pytest.param(lambda i: tokens.other_alg(i, "RS512"), id="alg-RS512"),
        pytest.param(tokens.unsigned, id="alg-none"),
        pytest.param(tokens.hs256_with_public_key, id="alg-HS256"),
    ],
)
def test_401_with_www_authenticate(receiver: Receiver, issuer: LocalIssuer, make: Any) -> None:
    response = post(receiver, alert("auth"), make(issuer))
    assert response.status_code == 401, response.text
    assert (
        response.headers["www-authenticate"].startswith("Bearer")
        and 'error="invalid_token"' in response.headers["www-authenticate"]
    )
    assert_error_body(response)


def test_401_bad_signature_with_known_kid(receiver: Receiver, issuer: LocalIssuer) -> None:
    forger = generate_signing_key()
    response = post(
        receiver, alert("forged"), issuer.sign(issuer.claims(), {"kid": issuer.kid, "typ": "JWT"}, key=forger)
    )
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    "make, body",
    [
        pytest.param(lambda i: i.mint(roles=["Reader"]), alert("role"), id="no-role"),
        pytest.param(lambda i: i.mint(appid=tokens.OTHER_DAEMON_APP), alert("caller"), id="caller-v1"),
        pytest.param(lambda i: i.mint(version=2, azp=tokens.OTHER_DAEMON_APP), alert("caller2"), id="caller-v2"),
        pytest.param(lambda i: i.mint(), alert("sub", subscription=OTHER_SUBSCRIPTION), id="subscription"),
    ],
)
def test_403(receiver: Receiver, issuer: LocalIssuer, make: Any, body: dict[str, Any]) -> None:
    response = post(receiver, body, make(issuer))
    assert response.status_code == 403, response.text
    assert_error_body(response)


@pytest.mark.parametrize(
    "raw, content_type, status",
    [
        pytest.param(b"{not json", "application/json", 400, id="not-json"),
        pytest.param(b"[1, 2]", "application/json", 422, id="array"),
        pytest.param(b'"text"', "application/json", 422, id="string"),
        pytest.param(b'{"hello": "world"}', "application/json", 422, id="object-without-schema"),
        pytest.param(json.dumps(alert("ct")).encode(), "text/plain", 415, id="not-application-json"),
        pytest.param(b" " * (1024 * 1024 + 1), "application/json", 413, id="over-1MiB"),
    ],
)
def test_bad_bodies(receiver: Receiver, issuer: LocalIssuer, raw: bytes, content_type: str, status: int) -> None:
    response = post(receiver, None, issuer.mint(), content_type=content_type, raw=raw)
    assert response.status_code == status, response.text
    assert_error_body(response)


def test_unknown_kid_while_refresh_rate_limited_is_503_with_retry_after(
    receiver: Receiver, issuer: LocalIssuer
) -> None:
    forger = generate_signing_key()
    token = issuer.sign(issuer.claims(), {"kid": forger.kid, "typ": "JWT"}, key=forger)
    response = post(receiver, alert("kid"), token)
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert_error_body(response)


def test_healthz_readyz(receiver: Receiver) -> None:
    assert httpx.get(f"{receiver.url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{receiver.url}/readyz", timeout=10).status_code == 200


def test_readyz_503_without_signing_keys(tmp_path: Path, issuer: LocalIssuer) -> None:
    env = _env(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES="api://x",
        SECURE_EXPORT_JWKS_URI="http://127.0.0.1:9/nowhere/keys",
        SECURE_EXPORT_DB=str(tmp_path / "r.db"),
    )
    server = Receiver(env, tmp_path)
    try:
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 503
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    finally:
        server.stop()


def test_metrics_prometheus_text(receiver: Receiver, issuer: LocalIssuer) -> None:
    post(receiver, alert("metrics"), issuer.mint())
    response = httpx.get(f"{receiver.url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE" in text and 'status="202"' in text and 'status="401"' in text


def test_unknown_path_and_method_get_json_errors(receiver: Receiver) -> None:
    for response in (
        httpx.get(f"{receiver.url}/nope", timeout=10),
        httpx.get(f"{receiver.url}/api/alerts", timeout=10),
    ):
        assert 400 <= response.status_code < 500
        assert_error_body(response)


# --- work items, CIs, routing, trace ------------------------------------------------------------

WORK_ITEM_FIELDS = {
    "id",
    "number",
    "correlation_key",
    "alert_ids",
    "state",
    "severity",
    "priority",
    "title",
    "description",
    "configuration_items",
    "opened_at",
    "resolved_at",
    "occurrences",
    "notes",
}
ROUTED_FIELDS = {"assignment_group", "category", "subcategory", "impact", "urgency", "reopened"}


def test_work_item_fields_and_lifecycle(receiver: Receiver, issuer: LocalIssuer, workdir: Path) -> None:
    assert post(receiver, alert("life"), issuer.mint()).status_code == 202
    item = wait_for(workdir, "life", "New")
    assert WORK_ITEM_FIELDS <= set(item), WORK_ITEM_FIELDS - set(item)
    assert item["number"].startswith("INC") and len(item["number"]) == 10
    assert item["severity"] == "Sev1" and item["priority"] in range(1, 6)
    assert item["configuration_items"] == ["vm-life"] and item["resolved_at"] is None
    assert post(receiver, alert("life", "Resolved"), issuer.mint()).status_code == 202
    resolved = wait_for(workdir, "life", "Resolved")
    assert resolved["resolved_at"]


def test_work_item_routed_fields_are_present_and_null_unless_routed(
    receiver: Receiver, issuer: LocalIssuer, workdir: Path
) -> None:
    assert post(receiver, alert("fields", rg="rg-other"), issuer.mint()).status_code == 202
    item = wait_for(workdir, "fields", "New")
    assert ROUTED_FIELDS <= set(item), ROUTED_FIELDS - set(item)
    assert item["reopened"] == 0 and item["subcategory"] is None and item["category"] is None


def test_fired_within_reopen_window_reopens_the_resolved_item(
    receiver: Receiver, issuer: LocalIssuer, workdir: Path
) -> None:
    assert post(receiver, alert("flap"), issuer.mint()).status_code == 202
    assert post(receiver, alert("flap", "Resolved"), issuer.mint()).status_code == 202
    first = wait_for(workdir, "flap", "Resolved")
    again = alert("flap")
    again["data"]["essentials"]["alertId"] += "-again"  # Azure gives a new alert instance the same rule/target
    again["data"]["essentials"]["alertTargetIDs"] = alert("flap")["data"]["essentials"]["alertTargetIDs"]
    assert post(receiver, again, issuer.mint()).status_code == 202
    time.sleep(1.0)
    matching = [i for i in items(workdir) if any("/flap" in a for a in i["alert_ids"])]
    assert len(matching) == 1, matching
    assert (
        matching[0]["number"] == first["number"] and matching[0]["state"] != "Resolved" and matching[0]["reopened"] == 1
    )


def test_routing_sets_fields(receiver: Receiver, issuer: LocalIssuer, workdir: Path) -> None:
    assert post(receiver, alert("routed"), issuer.mint()).status_code == 202
    item = wait_for(workdir, "routed", "New")
    assert (item["assignment_group"], item["category"], item["impact"], item["urgency"]) == (
        "Shop On-Call",
        "Hardware",
        1,
        1,
    )
    assert item["subcategory"] is None
    body = alert("default", rg="rg-other")
    assert post(receiver, body, issuer.mint()).status_code == 202
    assert wait_for(workdir, "default", "New")["assignment_group"] == "Azure Monitor Triage"
    body = alert("team", rg="rg-other")
    body["data"]["customProperties"] = {"team": "identity"}
    assert post(receiver, body, issuer.mint()).status_code == 202
    assert wait_for(workdir, "team", "New")["assignment_group"] == "Identity Team"


def test_cmdb_fields(receiver: Receiver, issuer: LocalIssuer, workdir: Path) -> None:
    assert post(receiver, alert("ci"), issuer.mint()).status_code == 202
    wait_for(workdir, "ci", "New")
    result = run("cmdb", "--json", "--db", str(workdir / "receiver.db"))
    assert result.returncode == 0, result.stderr
    cis = {ci["name"]: ci for ci in json.loads(result.stdout)}
    ci = cis["vm-ci"]
    assert {"id", "name", "azure_resource_id", "first_seen", "last_seen"} <= set(ci)
    assert ci["azure_resource_id"].lower().endswith("/virtualmachines/vm-ci")


def test_trace_json_shape(receiver: Receiver, issuer: LocalIssuer, workdir: Path) -> None:
    body = alert("traced")
    assert post(receiver, body, issuer.mint()).status_code == 202
    item = wait_for(workdir, "traced", "New")
    alert_id = body["data"]["essentials"]["alertId"]
    result = run("trace", alert_id, "--json", "--db", str(workdir / "receiver.db"))
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["alert_id"] == alert_id
    (delivery,) = trace["deliveries"]
    assert {"id", "condition", "state", "attempts", "last_error", "received_at"} <= set(delivery)
    assert delivery["condition"] == "Fired" and delivery["state"] in ("pending", "done", "parked", "discarded")
    assert isinstance(delivery["id"], int) and isinstance(delivery["attempts"], int)
    assert [w["number"] for w in trace["work_items"]] == [item["number"]] and "url" in trace["work_items"][0]


def test_replay_and_discard_refuse_a_delivery_that_is_not_parked(
    receiver: Receiver, issuer: LocalIssuer, workdir: Path
) -> None:
    body = alert("ops")
    assert post(receiver, body, issuer.mint()).status_code == 202
    wait_for(workdir, "ops", "New")
    trace = json.loads(
        run("trace", body["data"]["essentials"]["alertId"], "--json", "--db", str(workdir / "receiver.db")).stdout
    )
    delivery_id = str(trace["deliveries"][0]["id"])
    for args in (("replay", "--id", delivery_id), ("discard", "--id", delivery_id, "--reason", "test")):
        result = run(*args, "--json", "--db", str(workdir / "receiver.db"))
        assert "Traceback" not in result.stderr
        assert delivery_id in result.stdout + result.stderr
    after = json.loads(
        run("trace", body["data"]["essentials"]["alertId"], "--json", "--db", str(workdir / "receiver.db")).stdout
    )
    assert after["deliveries"][0]["state"] == "done"


def _free_port() -> int:
    with socket.socket() as probe:  # SECURE_EXPORT_OPS_PORT must be 1..65535: ask the OS for a free one
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_configured_role_callers_body_limit_correlation_and_ops_port(tmp_path: Path, issuer: LocalIssuer) -> None:
    """SECURE_EXPORT_REQUIRED_ROLE / _ALLOWED_CALLERS / _MAX_BODY_BYTES / _CORRELATION / _OPS_PORT as documented."""
    caller = tokens.OTHER_DAEMON_APP
    env = _env(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES=",".join(issuer.audiences),
        SECURE_EXPORT_JWKS_URI=issuer.jwks_uri,
        SECURE_EXPORT_DB=str(tmp_path / "r.db"),
        SECURE_EXPORT_REQUIRED_ROLE="Alerts.Send",
        SECURE_EXPORT_ALLOWED_CALLERS=caller,
        SECURE_EXPORT_MAX_BODY_BYTES="4000",
        SECURE_EXPORT_CORRELATION="rule-target",
        SECURE_EXPORT_OPS_PORT=str(_free_port()),
    )
    server = Receiver(env, tmp_path)
    try:
        good = {"appid": caller, "roles": ["Alerts.Send"]}
        assert post(server, alert("a"), issuer.mint(roles=[ROLE], appid=caller)).status_code == 403
        assert post(server, alert("a"), issuer.mint(roles=["Alerts.Send"])).status_code == 403  # AzNS not allowed now
        assert post(server, None, issuer.mint(**good), raw=b" " * 4001).status_code == 413
        assert post(server, alert("a"), issuer.mint(**good)).status_code == 202
        second = alert("b")
        second["data"]["essentials"]["alertTargetIDs"] = alert("a")["data"]["essentials"]["alertTargetIDs"]
        assert post(server, second, issuer.mint(**good)).status_code == 202
        deadline = time.monotonic() + 30
        while True:
            listed = json.loads(run("work-items", "--json", "--db", str(tmp_path / "r.db")).stdout)
            if listed and sum(len(i["alert_ids"]) for i in listed) == 2:
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.2)
        assert len(listed) == 1, "rule-target correlation: one open item per rule and target"

        assert server.ops_url and server.ops_url != server.url
        assert httpx.get(f"{server.ops_url}/metrics", timeout=10).status_code == 200
        assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 404
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        assert httpx.get(f"{server.ops_url}/readyz", timeout=10).status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize(
    "variable, value",
    [
        ("SECURE_EXPORT_ITSM", "jira"),
        ("SECURE_EXPORT_CORRELATION", "by-colour"),
        ("SECURE_EXPORT_MAX_BODY_BYTES", "lots"),
        ("SECURE_EXPORT_DB_AUTH", "kerberos"),
    ],
)
def test_bad_receiver_variable_is_refused_at_start_naming_it(
    tmp_path: Path, issuer: LocalIssuer, variable: str, value: str
) -> None:
    env = _env(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES="api://x",
        SECURE_EXPORT_JWKS_URI=issuer.jwks_uri,
        SECURE_EXPORT_DB=str(tmp_path / "x.db"),
        **{variable: value},
    )
    status, stderr = refused_at_start(env, tmp_path)
    assert status == 2 and variable in stderr and "Traceback" not in stderr, stderr


@pytest.mark.parametrize("variable", ["SECURE_EXPORT_REOPEN_WINDOW", "SECURE_EXPORT_STATELESS_TTL"])
def test_bad_duration_is_refused_at_start_naming_it(tmp_path: Path, issuer: LocalIssuer, variable: str) -> None:
    env = _env(
        SECURE_EXPORT_TENANT_ID=issuer.tenant_id,
        SECURE_EXPORT_AUDIENCES="api://x",
        SECURE_EXPORT_JWKS_URI=issuer.jwks_uri,
        SECURE_EXPORT_DB=str(tmp_path / "x.db"),
        **{variable: "soon"},
    )
    status, stderr = refused_at_start(env, tmp_path)
    assert status == 2 and variable in stderr, stderr


def test_consumer_imports_components_beside_its_own_components_package(tmp_path: Path) -> None:
    own = tmp_path / "components"
    own.mkdir()
    (own / "__init__.py").write_text("MINE = True\n")
    # Its own modules: had ours imported `components.<module>` absolutely, it would get these.
    (own / "action_group.py").write_text("raise ImportError('the consumer module was imported')\n")
    (own / "identity.py").write_text("raise ImportError('the consumer module was imported')\n")
    script = (
        "import components\n"
        "from secure_export.components import AlertRules, ReceiverService, SecureExport, SecureWebhookActionGroup\n"
        "from secure_export.components import SecureWebhookIdentity\n"
        "assert components.MINE, 'the consumer package was replaced'\n"
        "print(SecureExport.__module__, SecureWebhookIdentity.__module__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=_env(PYTHONPATH=str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["secure_export.components.secure_export", "secure_export.components.identity"]


@pytest.mark.parametrize(
    "raw, content_type, headers, status",
    [
        pytest.param(None, "application/json; charset=utf-8", {}, 202, id="json-with-charset"),
        pytest.param(b"\xff\xfe{}", "application/json", {}, 400, id="not-utf8"),
        pytest.param(None, "application/json", {"Authorization": "Bearer"}, 401, id="empty-bearer"),
        pytest.param(None, "application/json", {"Authorization": "Basic dXNlcjpwYXNz"}, 401, id="basic-scheme"),
        pytest.param(None, "application/json", {"Authorization": "Bearer " + "a" * 20000}, 401, id="huge-token"),
        pytest.param(
            b'{"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": 5}}',
            "application/json",
            {},
            422,
            id="essentials-not-object",
        ),
    ],
)
def test_odd_requests_get_the_documented_status_never_500(
    receiver: Receiver, issuer: LocalIssuer, raw: bytes | None, content_type: str, headers: dict[str, str], status: int
) -> None:
    sent = {"Content-Type": content_type, "Authorization": f"Bearer {issuer.mint()}", **headers}
    content = raw if raw is not None else json.dumps(alert(f"odd-{status}-{len(headers)}")).encode()
    response = httpx.post(f"{receiver.url}/api/alerts", content=content, headers=sent, timeout=10)
    assert response.status_code == status, response.text
    if status != 202:
        assert_error_body(response)
    if status == 401:
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
