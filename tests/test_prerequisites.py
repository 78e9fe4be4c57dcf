"""A missing prerequisite skips locally and fails under CI=true (tests/support/prerequisites.py)."""

from __future__ import annotations

import pytest

from tests.support.prerequisites import missing, require


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_missing_prerequisite_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="prerequisite missing in CI.*podman not found"):
        require(False, "podman not found")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_missing_prerequisite_skips_with_its_reason_outside_ci(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="^podman not found$"):
        missing("podman not found")


def test_present_prerequisite_goes_on_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require(True, "never shown")
