"""A clock the test moves by hand: TTLs, token lifetimes and refetch intervals crossed without sleeping."""

from __future__ import annotations


class ManualClock:
    """A monotonic (or wall) clock for an injected ``clock=`` seam; it moves only on :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds
