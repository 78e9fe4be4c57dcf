"""The embedded backend across a receiver crash: SIGKILL mid-dispatch, restart, no loss, no duplicate."""

from __future__ import annotations

from pathlib import Path

from receiver.itsm.embedded import list_work_items
from receiver.local_issuer import LocalIssuer
from tests.receiver.harness import alert_body, start_receiver

ALERTS = 40


def test_sigkill_during_dispatch_then_restart_gives_each_alert_exactly_one_work_item(
    tmp_path: Path, issuer: LocalIssuer
) -> None:
    db = tmp_path / "secure-export.db"
    token = issuer.mint()
    first = start_receiver(tmp_path, issuer, subprocess=True, db=str(db))
    try:
        for n in range(ALERTS):
            assert first.post_alert(alert_body(n), token).status_code == 202
            if n % 2 == 0:
                assert first.post_alert(alert_body(n, "Resolved"), token).status_code == 202
    finally:
        first.kill()  # no shutdown code runs; some rows are still pending, some half-applied

    with start_receiver(tmp_path, issuer, subprocess=True, db=str(db)) as second:
        counts = second.wait_dispatched()
    assert counts["parked"] == 0, counts

    items = list_work_items(str(db))
    by_alert: dict[str, list[dict[str, object]]] = {}
    for item in items:
        for alert_id in item["alert_ids"]:
            by_alert.setdefault(alert_id, []).append(item)
    expected_ids = {alert_body(n)["data"]["essentials"]["alertId"] for n in range(ALERTS)}
    assert set(by_alert) == expected_ids
    assert all(len(found) == 1 for found in by_alert.values()), "an alert got two work items"
    for n in range(ALERTS):
        [item] = by_alert[alert_body(n)["data"]["essentials"]["alertId"]]
        assert item["state"] == ("Resolved" if n % 2 == 0 else "New")
    assert [item["number"] for item in items] == [f"INC{n:07d}" for n in range(1, ALERTS + 1)]
