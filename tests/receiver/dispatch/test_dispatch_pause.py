"""The dispatcher pauses while the backend reports not ready, and counts no attempts meanwhile.

Wrong ITSM credentials are the case in point: every call fails until an operator fixes them, and
counting those failures would park every alert after ``max_attempts``. An outage, during which a
backend stays ready, must still consume attempts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from receiver.alerts.events import AlertEvent
from receiver.dispatch.dispatcher import Dispatcher
from receiver.itsm.base import Readiness, TransientBackendError
from receiver.storage.sqlite.inbox import Inbox, count_by_state
from tests.support.alerts import alert_body
from tests.support.backends import RecordingBackend

pytestmark = pytest.mark.anyio

MAX_ATTEMPTS = 3
BACKOFF_CAP = 0.02


class LockedOutBackend(RecordingBackend):
    """Refuses every call while ``locked`` (as a 401 would) and then reports itself not ready."""

    name = "locked-out"

    def __init__(self) -> None:
        super().__init__()
        self.locked = True
        self.refused = 0
        self.readiness_checks = 0

    async def readiness(self) -> Readiness:
        self.readiness_checks += 1
        return Readiness(False, "credentials refused (HTTP 401)") if self.locked else Readiness(True)

    async def apply(self, event: AlertEvent) -> None:
        if self.locked:
            self.refused += 1
            raise TransientBackendError("credentials refused (HTTP 401)")
        await super().apply(event)


async def _fill(inbox: Inbox, names: list[str]) -> None:
    for name in names:
        for condition in ("Fired", "Resolved"):
            body = alert_body(name, condition)
            await inbox.put(body["data"]["essentials"]["alertId"], condition, json.dumps(body).encode())


async def _until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_not_ready_backend_pauses_without_consuming_attempts_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="receiver.dispatch.dispatcher")
    db = str(tmp_path / "pause.db")
    backend = LockedOutBackend()
    names = [f"p{n}" for n in range(6)]

    inbox = Inbox(db)
    dispatcher = Dispatcher(
        inbox, backend, concurrency=4, max_attempts=MAX_ATTEMPTS, backoff_base=0.005, backoff_cap=BACKOFF_CAP
    )
    inbox.set_on_committed(dispatcher.notify)
    await inbox.open()
    await dispatcher.start()
    await _fill(inbox, names)
    await _until(lambda: backend.refused > 0 and dispatcher.paused_reason is not None)
    # Locked out for longer than max_attempts x backoff takes to park a row: 2 x MAX_ATTEMPTS
    # readiness re-checks, each at least the backoff cap apart (counted, not slept).
    checks = backend.readiness_checks
    await _until(lambda: backend.readiness_checks >= checks + 2 * MAX_ATTEMPTS)
    refused_while_paused = backend.refused
    pending = await inbox.pending(limit=100)
    reason = dispatcher.paused_reason
    backend.locked = False  # the operator fixes the credentials
    await _until(lambda: inbox.depth() == 0)
    await dispatcher.stop()
    await inbox.close()
    attempts, reason, refused = [row.attempts for row in pending], reason, refused_while_paused

    assert reason == "credentials refused (HTTP 401)"
    assert attempts == [0] * len(names) * 2  # nothing counted toward max_attempts
    # No hammering: while paused, at most the calls already under way when the pause began.
    assert refused <= len(names)
    assert count_by_state(db) == {"pending": 0, "done": len(names) * 2, "parked": 0}
    # Every alert applied exactly once, Fired before Resolved.
    assert len(backend.calls) == len(backend.applied) == len(names) * 2
    for name in names:
        alert_id = alert_body(name)["data"]["essentials"]["alertId"]
        assert [c for a, c in backend.applied if a == alert_id] == ["Fired", "Resolved"]
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("dispatch_paused") == 1 and events.count("dispatch_resumed") == 1
    paused = next(r for r in caplog.records if getattr(r, "event", None) == "dispatch_paused")
    assert getattr(paused, "reason", None) == "credentials refused (HTTP 401)"


async def _drain(db: str, backend: RecordingBackend, names: list[str], **options: Any) -> Dispatcher:
    """Store Fired and Resolved for ``names``, dispatch until nothing is pending, stop; the dispatcher."""
    inbox = Inbox(db)
    dispatcher = Dispatcher(inbox, backend, backoff_base=0.005, backoff_cap=BACKOFF_CAP, **options)
    inbox.set_on_committed(dispatcher.notify)
    await inbox.open()
    await dispatcher.start()
    await _fill(inbox, names)
    await _until(lambda: inbox.depth() == 0)
    await dispatcher.stop()
    await inbox.close()
    return dispatcher


async def test_an_outage_with_the_backend_ready_still_parks_after_max_attempts(tmp_path: Path) -> None:
    db = str(tmp_path / "outage.db")
    backend = RecordingBackend()  # readiness: ready, as a backend stays through an outage
    backend.outage()

    dispatcher = await _drain(db, backend, ["o1"], max_attempts=MAX_ATTEMPTS)
    assert dispatcher.pauses == 0
    assert count_by_state(db) == {"pending": 0, "done": 0, "parked": 2}
    assert len(backend.calls) == 2 * MAX_ATTEMPTS


async def test_a_readiness_check_that_fails_does_not_stall_dispatching(tmp_path: Path) -> None:
    db = str(tmp_path / "broken-probe.db")

    class BrokenProbe(RecordingBackend):
        async def readiness(self) -> Readiness:
            raise RuntimeError("probe bug")

    backend = BrokenProbe()
    backend.fail_transient(1)

    dispatcher = await _drain(db, backend, ["b1"])
    assert dispatcher.pauses == 0 and dispatcher.failures == 1
    assert count_by_state(db) == {"pending": 0, "done": 2, "parked": 0}
