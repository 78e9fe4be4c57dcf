"""When did each alert's work item come into existence? Read from the embedded backend's SQLite
file after a run (``applied_events.applied_at``), so nothing polls the database during the load.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from bench.payloads import alert_id


def _connect(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def fired_count(db_path: Path) -> int:
    """How many Fired events the backend has applied so far (0 before its tables exist)."""
    if not db_path.exists():
        return 0
    conn = _connect(db_path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM applied_events WHERE condition = 'Fired'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def applied_times(db_path: Path, instances: Iterable[str]) -> dict[str, float]:
    """Epoch seconds at which each alert instance's Fired event was applied (missing ones absent)."""
    wanted = {alert_id(instance): instance for instance in instances}
    conn = _connect(db_path)
    try:
        rows = conn.execute("SELECT alert_id, applied_at FROM applied_events WHERE condition = 'Fired'").fetchall()
    finally:
        conn.close()
    result: dict[str, float] = {}
    for full_id, applied_at in rows:
        instance = wanted.get(full_id)
        if instance is not None:
            result[instance] = datetime.fromisoformat(applied_at.replace("Z", "+00:00")).timestamp()
    return result


def work_item_census(db_path: Path, instances: Iterable[str]) -> dict[str, int]:
    """For the alert instances given: how many have exactly one work item, none, or several."""
    from receiver.itsm.embedded.queries import list_work_items

    per_alert: Counter[str] = Counter()
    for item in list_work_items(str(db_path)):
        per_alert.update(item["alert_ids"])
    wanted = [alert_id(instance) for instance in set(instances)]
    return {
        "distinct_alerts": len(wanted),
        "with_one_work_item": sum(1 for full_id in wanted if per_alert[full_id] == 1),
        "missing": sum(1 for full_id in wanted if per_alert[full_id] == 0),
        "duplicated": sum(1 for full_id in wanted if per_alert[full_id] > 1),
    }
