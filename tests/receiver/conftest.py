"""Fixtures shared by the receiver tests: a local Azure AD stand-in per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from receiver.demo.local_issuer import LocalIssuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    """A :class:`LocalIssuer` (RSA key + JWKS on 127.0.0.1) shared by one test module.

    Tests that rotate keys or make the JWKS fail should build their own issuer instead.
    """
    with LocalIssuer() as local_issuer:
        yield local_issuer
