"""``secure-export demo``: the whole path on this machine with a local issuer and the embedded backend."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from receiver.demo.alerts import DEMO_ROUTING, DEMO_SUBSCRIPTION_ID, DemoAlert, demo_alerts, refire
from secure_export.contract import ALERTS_PATH

APPLY_TIMEOUT_SECONDS = 10.0
"""How long to wait for the dispatcher to apply everything before declaring failure."""


class DemoFailed(Exception):
    """A step of the demo did not behave as the receiver's contract says."""


@dataclass(frozen=True, slots=True)
class _Delivery:
    label: str
    payload: dict[str, Any]
    token_version: int
    note: str = ""


def run_demo(db_path: str | None = None, out: TextIO | None = None) -> int:
    """Run the demo; ``db_path`` keeps the SQLite file (default: a temporary one). Returns the exit status."""
    out = out or sys.stdout
    try:
        with ExitStack() as stack:
            db = db_path or str(
                Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="secure-export-demo-"))) / "demo.db"
            )
            _run(db, out, stack, kept=db_path is not None)
    except DemoFailed as error:
        out.flush()
        sys.stderr.write(f"secure-export demo: FAILED: {error}\n")
        return 1
    except RuntimeError as error:  # the receiver or the issuer could not start
        out.flush()
        sys.stderr.write(f"secure-export demo: could not start: {error}\n")
        return 1
    return 0


def _run(db: str, out: TextIO, stack: ExitStack, *, kept: bool) -> None:
    from receiver.demo.local_issuer import LocalIssuer, generate_signing_key
    from receiver.http.server import BackgroundServer
    from receiver.itsm.embedded.store import EmbeddedBackend
    from receiver.settings import load_settings

    started = time.monotonic()

    def step(text: str) -> None:
        out.write(f"[{time.monotonic() - started:5.2f}s] {text}\n")
        out.flush()

    issuer = stack.enter_context(LocalIssuer())
    step(f"Azure AD stand-in: tenant {issuer.tenant_id}, signing key {issuer.kid[:12]}…, JWKS at {issuer.jwks_uri}")

    routing = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="secure-export-routing-"))) / "routing.yaml"
    routing.write_text(DEMO_ROUTING)
    settings = load_settings(
        {
            "SECURE_EXPORT_TENANT_ID": issuer.tenant_id,
            "SECURE_EXPORT_AUDIENCES": ",".join(issuer.audiences),
            "SECURE_EXPORT_JWKS_URI": issuer.jwks_uri,
            "SECURE_EXPORT_ALLOWED_SUBSCRIPTIONS": DEMO_SUBSCRIPTION_ID,
            "SECURE_EXPORT_DB": db,
            "SECURE_EXPORT_ROUTING": str(routing),
            # Microsoft's libraries refetch at most every 5 minutes; the unknown-kid step relies on it.
            "SECURE_EXPORT_JWKS_MIN_REFETCH_SECONDS": "300",
        }
    )
    server = stack.enter_context(_running(BackgroundServer.from_settings(settings, backend=EmbeddedBackend(db))))
    step(f"receiver: {server.url} (embedded backend, database {db}{'' if kept else ', temporary'})")
    step(
        f"it accepts RS256 tokens from {issuer.issuer(1)} or {issuer.issuer(2)}, aud in {list(issuer.audiences)}, "
        f"role ActionGroupsSecureWebhook, caller {issuer.caller_app_id}"
    )

    alerts = demo_alerts()
    client = stack.enter_context(httpx.Client(base_url=server.url, timeout=10.0))
    step("sending alerts (POST /api/alerts, Authorization: Bearer <token>):")
    accepted: set[tuple[str, str]] = set()
    for delivery in _deliveries(alerts):
        response = _post(client, delivery.payload, issuer.mint(version=delivery.token_version))
        essentials = delivery.payload["data"]["essentials"]
        condition = essentials["monitorCondition"]
        answer = _answer(response)
        rule = essentials["alertRule"]
        out.write(f"    {response.status_code}  {condition:<8}  {delivery.label:<38} {rule:<28} {answer}")
        out.write(f"{delivery.note}\n")
        if response.status_code != 202:
            raise DemoFailed(f"{delivery.label} {condition} was answered {response.status_code}: {response.text}")
        accepted.add((essentials["alertId"], condition))
    without_resolved = [alert for alert in alerts if alert.resolved is None]
    out.write(
        f"    (no Resolved for the {len(without_resolved)} activity-log alerts: Azure sends none for "
        "them; their work items stay open for a person)\n"
    )

    step("attempts that must be refused:")
    forger = generate_signing_key()
    checks = [
        (
            "token signed by a key not in the tenant's JWKS",
            issuer.sign(issuer.claims(), {"kid": issuer.kid, "typ": "JWT"}, key=forger),
            401,
        ),
        ("token without the ActionGroupsSecureWebhook role", issuer.mint(roles=["Reader"]), 403),
        # A kid the receiver has not seen, just after it fetched the keys: it may be a key Azure
        # has only just published, so the answer is "retry later" (Azure retries 503, not 401).
        (
            "token naming a key id the JWKS lacks, within the refetch interval",
            issuer.sign(issuer.claims(), {"kid": forger.kid, "typ": "JWT"}, key=forger),
            503,
        ),
    ]
    for label, token, expected in checks:
        response = _post(client, alerts[0].fired, token)
        out.write(f"    {response.status_code}  {label}  {_answer(response)}\n")
        if response.status_code != expected:
            raise DemoFailed(f"{label} was answered {response.status_code}, expected {expected}")

    step(f"waiting for the dispatcher to apply {len(accepted)} accepted deliveries…")
    _wait_until_applied(db, alerts)
    step("done: every delivery applied")

    again = refire(alerts[0])
    step(
        f"{alerts[0].rule} fires again 3 minutes after Azure resolved it (a new alert instance): within the "
        "reopen window (SECURE_EXPORT_REOPEN_WINDOW, 1 hour) its work item comes back instead of a new one"
    )
    for payload in (again.fired, again.resolved):
        assert payload is not None
        response = _post(client, payload, issuer.mint())
        condition = payload["data"]["essentials"]["monitorCondition"]
        out.write(
            f"    {response.status_code}  {condition:<8}  {again.kind:<38} {again.rule:<28} {_answer(response)}\n"
        )
        if response.status_code != 202:
            raise DemoFailed(f"the repeated {condition} was answered {response.status_code}: {response.text}")
        if condition == "Fired":
            # Reopened: the first instance's item is open again, holding both instances.
            opened = [DemoAlert(a.kind, a.fired, None) for a in (alerts[0], again)]
            _wait_until_applied(db, [*opened, *alerts[1:]])
    items = _wait_until_applied(db, [*alerts, again])
    reopened = next(item for item in items if again.alert_id in item["alert_ids"])
    if reopened["reopened"] < 1 or alerts[0].alert_id not in reopened["alert_ids"]:
        raise DemoFailed(f"the repeated alert did not reopen {alerts[0].rule}'s work item: {reopened}")
    step(f"done: {reopened['number']} reopened, resolved again by Azure")

    _report(out, db, items, alerts, kept=kept, elapsed=time.monotonic() - started, reopened=reopened)


def _report(
    out: TextIO,
    db: str,
    items: list[dict[str, Any]],
    alerts: list[DemoAlert],
    *,
    kept: bool,
    elapsed: float,
    reopened: dict[str, Any],
) -> None:
    """Print the work items and CIs, one item in full, and a one-line summary of this run."""
    from receiver.cli.tables import print_configuration_items, print_work_items
    from receiver.itsm.embedded.queries import list_configuration_items

    out.write("\n")
    print_work_items(items, out)
    out.write("\n")
    print_configuration_items(list_configuration_items(db), out)
    reordered = next(item for item in items if alerts[2].alert_id in item["alert_ids"])
    out.write(f"\n{reordered['number']} in full (the one whose Resolved overtook its Fired):\n")
    for line in reordered["description"].splitlines():
        out.write(f"    {line}\n")
    out.write("  notes:\n")
    for note in reordered["notes"]:
        out.write(f"    {note}\n")
    out.write(f"\n{reopened['number']} (reopened {reopened['reopened']}x) notes:\n")
    for note in reopened["notes"]:
        out.write(f"    {note}\n")
    groups: dict[str, int] = {}
    for item in items:
        groups[item["assignment_group"] or "-"] = groups.get(item["assignment_group"] or "-", 0) + 1
    out.write(
        "\nAssignment groups (from the demo's routing file): "
        + ", ".join(f"{group} {count}" for group, count in sorted(groups.items()))
        + "\n"
    )
    run_ids = {alert.alert_id for alert in alerts}
    mine = [item for item in items if run_ids & set(item["alert_ids"])]
    resolved = sum(1 for item in mine if item["state"] == "Resolved")
    out.write(
        f"\nThis run: {len(mine)} work items, {resolved} resolved by Azure's Resolved, {len(mine) - resolved} "
        f"still open (activity-log alerts). Finished in {elapsed:.1f}s.\n"
    )
    if kept:
        out.write(f"Inspect them again with: secure-export work-items --db {db}   /   secure-export cmdb --db {db}\n")


def _deliveries(alerts: list[DemoAlert]) -> Iterator[_Delivery]:
    """The order Azure might deliver them in, including a retry and a reordering."""
    metric, log_search, dynamic, admin, resource_health, service_health = alerts
    assert metric.resolved and log_search.resolved and dynamic.resolved
    yield _Delivery(metric.kind, metric.fired, 1, "  (v1 token)")
    yield _Delivery(log_search.kind, log_search.fired, 2, "  (v2 token)")
    yield _Delivery(admin.kind, admin.fired, 1)
    yield _Delivery(resource_health.kind, resource_health.fired, 1)
    yield _Delivery(service_health.kind, service_health.fired, 2)
    yield _Delivery(metric.kind, metric.fired, 1, "  (Azure retry of the same Fired: changes nothing)")
    yield _Delivery(dynamic.kind, dynamic.resolved, 1, "  (arrives before its Fired)")
    yield _Delivery(dynamic.kind, dynamic.fired, 1, "  (the late Fired: no open item is left)")
    yield _Delivery(metric.kind, metric.resolved, 1)
    yield _Delivery(log_search.kind, log_search.resolved, 2)


def _post(client: httpx.Client, payload: dict[str, Any], token: str) -> httpx.Response:
    return client.post(
        ALERTS_PATH,
        content=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def _answer(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if response.status_code == 202:
        return "duplicate" if body.get("duplicate") else "accepted"
    return f"{body.get('error', '')}: {body.get('detail', '')}"


def _wait_until_applied(db: str, alerts: list[DemoAlert]) -> list[dict[str, Any]]:
    """Poll until each alert's work item is in its expected state (bounded by APPLY_TIMEOUT_SECONDS).

    An item flap damping holds open (the demo run again and again within the reopen window makes
    its stateful alerts flap) counts as applied: its note says so.
    """
    from receiver.itsm.embedded.queries import list_work_items
    from receiver.storage.sqlite.inbox import count_by_state, list_parked

    expected = {alert.alert_id: ("Resolved" if alert.resolved else "New") for alert in alerts}
    deadline = time.monotonic() + APPLY_TIMEOUT_SECONDS
    while True:
        items = list_work_items(db)
        state_of = {alert_id: _settled_state(item) for item in items for alert_id in item["alert_ids"]}
        pending = count_by_state(db)["pending"]
        if pending == 0 and all(state_of.get(alert_id) == state for alert_id, state in expected.items()):
            return items
        parked = list_parked(db)
        if parked:
            first = parked[0]
            raise DemoFailed(
                f"{len(parked)} deliveries were parked instead of applied; the first, "
                f"{first['monitor_condition']} {first['alert_id']}: {first['last_error']}"
            )
        if time.monotonic() > deadline:
            wrong = {
                alert_id: (state_of.get(alert_id), state)
                for alert_id, state in expected.items()
                if state_of.get(alert_id) != state
            }
            raise DemoFailed(
                f"after {APPLY_TIMEOUT_SECONDS:g}s, {pending} deliveries still pending; "
                f"work items not in the expected state (found, expected): {wrong}"
            )
        time.sleep(0.05)


def _settled_state(item: dict[str, Any]) -> str:
    held = item["state"] == "New" and item["notes"] and " Flapping: " in item["notes"][-1]
    return "Resolved" if held else str(item["state"])


@contextmanager
def _running(server: Any) -> Iterator[Any]:
    """Start the in-process receiver and always stop it (gracefully: the inbox drains)."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(run_demo())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="secure-export demo",
        description=(
            "The whole path on this machine, no cloud: a local key pair and JWKS stand in for "
            "Azure AD, a real receiver with the embedded backend runs on 127.0.0.1, sample Azure "
            "Monitor alerts are fired and then resolved over HTTP, and the resulting work items "
            "and configuration items are printed. Authentication stays on throughout."
        ),
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="keep the demo's SQLite file here (default: a temporary file, removed afterwards); "
        "an existing file gets a new set of alerts added",
    )
    from receiver.cli.options import checked_db, parse_args

    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    if args.db is None:
        return run_demo()
    db = checked_db("secure-export demo", args.db, new_file=True, source="--db")
    return db if isinstance(db, int) else run_demo(db_path=db)
