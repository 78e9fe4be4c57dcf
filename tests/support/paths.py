"""Where things are, for tests: the repository root and the conformance corpus beside it."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout: ``tests/`` and ``receiver/`` are its children."""

SAMPLES = REPO_ROOT.parent / "shared" / "samples" / "common-alert-schema"
"""Microsoft's published common-alert-schema payloads; CI keeps ``shared/`` beside the clone."""
