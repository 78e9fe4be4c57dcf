"""Run a Pulumi program callable offline under Pulumi mocks and count what it declared.

Used for programs the components' own offline plan does not know (the plain comparison program)
when ``components.plan`` offers no reusable runner; both programs then pay the same engine cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def run_program(program: Callable[[], None], *, project: str = "bench", stack: str = "bench") -> int:
    """Run ``program`` under mocks until every registration finished; return how many resources it declared."""
    import pulumi
    from pulumi.runtime.stack import wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    class _CountingMocks(pulumi.runtime.Mocks):
        def __init__(self) -> None:
            self.resources = 0

        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            self.resources += 1
            return f"{args.name}-id", dict(args.inputs)

        def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
            return {}

    mocks = _CountingMocks()
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False)
    program()
    _sync_await(wait_for_rpcs())
    return mocks.resources
