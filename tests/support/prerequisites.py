"""Prerequisites of a test: skip locally with the reason, fail under ``CI=true``.

A test that needs something the machine may lack (the shared samples beside the clone,
PostgreSQL, podman) calls :func:`require` or :func:`missing`. On a developer's machine the test
is skipped and ``-ra`` prints why; in CI, which is meant to have every prerequisite listed in
docs/testing.md, a missing one is a failure, so a broken CI image cannot turn the suite green by
skipping. Things CI is not meant to have (``wrk``, a Docker engine) keep using ``pytest.skip``.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True when the suite runs in CI (``CI=true``, as ``.ci/run`` and most CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def missing(reason: str) -> NoReturn:
    """Stop the current test: a failure under ``CI=true``, a skip with ``reason`` otherwise."""
    if in_ci():
        pytest.fail(f"prerequisite missing in CI (CI=true): {reason}", pytrace=False)
    pytest.skip(reason)


def require(condition: bool, reason: str) -> None:
    """Go on when ``condition`` holds; otherwise :func:`missing` with ``reason``."""
    if not condition:
        missing(reason)
