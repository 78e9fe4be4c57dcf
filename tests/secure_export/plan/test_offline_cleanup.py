"""The offline engine leaves nothing behind that would speak up later: no open event loops, no
failed futures waiting for the garbage collector to log them."""

import asyncio
import gc
import subprocess
import sys

import pytest

from secure_export.components import SecureWebhookActionGroup
from tests.support.paths import REPO_ROOT
from tests.support.plans import declare

REPO = REPO_ROOT


def _group(receiver_base_url: str) -> None:
    SecureWebhookActionGroup(
        "ag",
        {
            "resource_group_name": "rg",
            "short_name": "short",
            "receiver_base_url": receiver_base_url,
            "application_object_id": "app-object-id",
            "identifier_uri": "api://rx",
            "tenant_id": "0b6f4c1e-3d2a-4f5b-8c9d-7e6f5a4b3c2d",
        },
    )


def test_a_failed_run_leaves_no_future_to_log_its_error_again():
    with pytest.raises(Exception, match="https"):
        declare(lambda: _group("http://rx.example.net"))
    # A future whose exception nobody retrieved logs it from its destructor, whenever that runs
    # (on CPython 3.11.7, inside another ast.parse it breaks that parse); 46 were left before.
    unseen = [
        o
        for o in gc.get_objects()
        if isinstance(o, asyncio.Future) and o.done() and not o.cancelled() and o._log_traceback
    ]
    assert unseen == []


def _open_loops() -> dict[int, asyncio.AbstractEventLoop]:
    return {id(o): o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed()}


def test_executor_threads_loops_are_closed_after_a_run():
    # Only loops this run opens count: an earlier test's asyncio.run() unsets the main thread's
    # loop (it does not close it), which left an engine's main-thread loop from an earlier plan
    # open and made this test fail depending on which tests ran before it.
    before = _open_loops()
    declare(lambda: _group("https://rx.example.net"))
    main_loop = asyncio.get_event_loop_policy().get_event_loop()
    opened = [o for key, o in _open_loops().items() if key not in before and o is not main_loop]
    assert opened == []


def test_plan_exits_without_unclosed_event_loops():
    completed = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-m", "secure_export.cli", "plan", "--stack", "dev"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "unclosed event loop" not in completed.stderr
    assert "Exception ignored" not in completed.stderr
