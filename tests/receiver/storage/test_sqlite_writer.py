"""The shared SQLite writer thread: batching, order, answers, failures, stop and restart, the idle hook."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from receiver.storage.sqlite.connection import connect
from receiver.storage.sqlite.writer import SQLiteWriter, WriterJob, settle_jobs

pytestmark = pytest.mark.anyio


class Job(WriterJob[str]):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class Owner:
    """An owner recording what its handler saw, on which thread, with a gate to hold the first batch."""

    def __init__(self, db: Path, *, answer: bool = True) -> None:
        self.db = db
        self.answer = answer
        self.batches: list[list[str]] = []
        self.events: list[str] = []
        self.threads: set[str] = set()
        self.connects = 0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_connects = 0

    def connect(self) -> sqlite3.Connection:
        self.connects += 1
        if self.fail_connects:
            self.fail_connects -= 1
            raise sqlite3.OperationalError("unable to open database file")
        return connect(str(self.db), synchronous="NORMAL")

    def handle(self, jobs: list[Job]) -> None:
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        self.gate.wait(10)
        self.batches.append([job.name for job in jobs])
        self.events.extend(job.name for job in jobs)
        if self.answer:
            for job in jobs:
                if job.name.startswith("boom"):
                    raise RuntimeError(f"handler failed on {job.name}")
                job.succeed(f"done {job.name}")


def writer(owner: Owner, **kwargs: Any) -> SQLiteWriter[Job]:
    return SQLiteWriter("test-writer", owner.connect, owner.handle, **kwargs)


async def submit(w: SQLiteWriter[Job], name: str) -> asyncio.Future[str]:
    job = Job(name)
    w.submit(job)
    return job.future


async def hold_first(w: SQLiteWriter[Job], owner: Owner) -> asyncio.Future[str]:
    """Submit ``j0`` and wait until the handler holds it: what is submitted next queues up behind it."""
    owner.gate.clear()
    first = await submit(w, "j0")
    await asyncio.to_thread(owner.entered.wait, 10)
    return first


async def test_jobs_queued_while_the_thread_is_busy_form_one_batch_in_arrival_order(tmp_path: Path) -> None:
    owner = Owner(tmp_path / "w.db")
    w = writer(owner)
    first = await hold_first(w, owner)
    rest = [await submit(w, f"j{i}") for i in range(1, 6)]
    owner.gate.set()
    assert await asyncio.gather(first, *rest) == [f"done j{i}" for i in range(6)]
    assert owner.batches == [["j0"], ["j1", "j2", "j3", "j4", "j5"]]
    assert owner.threads == {"test-writer"}
    await w.stop()


async def test_max_batch_bounds_what_is_taken_at_once(tmp_path: Path) -> None:
    owner = Owner(tmp_path / "w.db")
    w = writer(owner, max_batch=2)
    futures = [await hold_first(w, owner)]
    futures += [await submit(w, f"j{i}") for i in range(1, 6)]
    owner.gate.set()
    await asyncio.gather(*futures)
    assert owner.batches == [["j0"], ["j1", "j2"], ["j3", "j4"], ["j5"]]
    await w.stop()


async def test_calls_run_with_the_connection_between_runs_of_jobs_in_queue_order(tmp_path: Path) -> None:
    owner = Owner(tmp_path / "w.db")
    w = writer(owner)
    blocker = await hold_first(w, owner)

    def call(name: str) -> Callable[[sqlite3.Connection], int]:
        def fn(conn: sqlite3.Connection) -> int:
            owner.events.append(name)
            return int(conn.execute("SELECT 41 + 1").fetchone()[0])

        return fn

    a = await submit(w, "a")
    c1 = asyncio.ensure_future(w.call(call("call-1")))
    await asyncio.sleep(0)  # the call is queued when its task first runs
    b = await submit(w, "b")
    owner.gate.set()
    assert [await blocker, await a, await c1, await b] == ["done j0", "done a", 42, "done b"]
    assert owner.events == ["j0", "a", "call-1", "b"]
    assert owner.batches == [["j0"], ["a"], ["b"]]
    await w.stop()


async def test_a_failing_handler_fails_its_unanswered_jobs_and_the_writer_goes_on(tmp_path: Path) -> None:
    owner = Owner(tmp_path / "w.db")
    w = writer(owner)
    blocker = await hold_first(w, owner)
    ok, boom, after = await submit(w, "ok"), await submit(w, "boom"), await submit(w, "after")
    owner.gate.set()
    assert await blocker == "done j0"
    assert await ok == "done ok"  # answered before the handler raised: keeps its answer
    for future in (boom, after):
        with pytest.raises(RuntimeError, match="handler failed on boom"):
            await future
    assert await (await submit(w, "later")) == "done later"
    await w.stop()


async def test_a_job_the_handler_leaves_unanswered_raises_instead_of_hanging(tmp_path: Path) -> None:
    w = writer(Owner(tmp_path / "w.db", answer=False))
    with pytest.raises(RuntimeError, match="left the job unanswered"):
        await asyncio.wait_for(await submit(w, "j"), 10)
    await w.stop()


async def test_the_connection_opens_on_first_use_and_a_failed_open_is_retried(tmp_path: Path) -> None:
    owner = Owner(tmp_path / "w.db")
    owner.fail_connects = 1
    w = writer(owner)
    assert owner.connects == 0 and not w.running
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        await w.call(lambda conn: None)
    assert await w.call(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    assert await w.call(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]) == 1  # NORMAL
    assert owner.connects == 2
    await w.stop()


async def test_stop_finishes_what_was_queued_closes_the_connection_and_a_later_job_restarts_it(
    tmp_path: Path,
) -> None:
    owner = Owner(tmp_path / "w.db")
    w = writer(owner)
    conns: list[sqlite3.Connection] = []
    futures = [await hold_first(w, owner)]
    call = asyncio.ensure_future(w.call(conns.append))
    await asyncio.sleep(0)
    futures += [await submit(w, f"j{i}") for i in range(1, 4)]
    stopping = asyncio.ensure_future(w.stop())
    await asyncio.sleep(0.05)
    owner.gate.set()
    await stopping
    assert call.done() and call.exception() is None and len(conns) == 1
    assert [f.result() for f in futures] == [f"done j{i}" for i in range(4)]
    assert not w.running
    with pytest.raises(sqlite3.ProgrammingError):  # closed by stop()
        conns[0].execute("SELECT 1")
    assert await (await submit(w, "again")) == "done again"
    assert await w.call(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
    assert w.running and owner.connects == 2  # a new connection after the restart
    await w.stop()
    await w.stop()  # a second stop is a no-op


async def test_a_caller_that_gave_up_does_not_disturb_the_others(tmp_path: Path) -> None:
    owner = Owner(tmp_path / "w.db")
    w = writer(owner)
    blocker = await hold_first(w, owner)
    gone, kept = await submit(w, "gone"), await submit(w, "kept")
    gone.cancel()
    owner.gate.set()
    assert await blocker == "done j0" and await kept == "done kept"
    assert gone.cancelled()
    await w.stop()


async def test_a_batch_is_settled_with_one_hop_to_the_loop(tmp_path: Path) -> None:
    owner = Owner(tmp_path / "w.db")
    hops: list[list[str]] = []
    loop_thread: list[str] = []

    def settle(jobs: list[WriterJob[Any]]) -> None:
        loop_thread.append(threading.current_thread().name)
        hops.append([job.name for job in jobs if isinstance(job, Job)])
        settle_jobs(jobs)

    w = writer(owner, settle=settle)
    futures = [await hold_first(w, owner)]
    futures += [await submit(w, f"j{i}") for i in range(1, 4)]
    owner.gate.set()
    await asyncio.gather(*futures)
    assert hops == [["j0"], ["j1", "j2", "j3"]]
    assert set(loop_thread) == {threading.current_thread().name}
    await w.stop()


async def test_the_idle_hook_runs_on_the_thread_when_nothing_arrives(tmp_path: Path) -> None:
    owner = Owner(tmp_path / "w.db")
    idle_threads: list[str] = []
    idled = threading.Event()

    def idle() -> None:
        idle_threads.append(threading.current_thread().name)
        idled.set()
        raise RuntimeError("a failing idle hook is logged, not fatal")

    w = writer(owner, idle=idle, idle_seconds=0.01)
    assert await (await submit(w, "j0")) == "done j0"
    assert await asyncio.to_thread(idled.wait, 10)
    assert await (await submit(w, "j1")) == "done j1"
    assert set(idle_threads) == {"test-writer"}
    await w.stop()


def test_max_batch_must_be_positive(tmp_path: Path) -> None:
    owner = Owner(tmp_path / "w.db")
    with pytest.raises(ValueError, match="max_batch"):
        SQLiteWriter("w", owner.connect, owner.handle, max_batch=0)
