"""The offline engine runs after ``asyncio.run()`` left the thread without an event loop (a test, the demo)."""

import asyncio

import pulumi

from secure_export.plan.offline import run_program


def test_a_plan_after_asyncio_run_in_the_same_thread():
    async def nothing() -> None:
        return None

    asyncio.run(nothing())  # afterwards the main thread has no current event loop

    def program() -> None:
        pulumi.export("answer", 42)

    assert run_program(program, stack="loop").outputs == {"answer": 42}
