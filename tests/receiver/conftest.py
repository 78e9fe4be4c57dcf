"""Fixtures shared by the receiver tests: local Azure AD stand-ins (:class:`LocalIssuer`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from receiver.demo.local_issuer import LocalIssuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    """A :class:`LocalIssuer` (RSA key + JWKS on 127.0.0.1) shared by one test module.

    Tests that rotate keys, make the JWKS fail or count its fetches take ``fresh_issuer`` instead.
    """
    with LocalIssuer() as local_issuer:
        yield local_issuer


@pytest.fixture
def fresh_issuer() -> Iterator[LocalIssuer]:
    """An issuer of one test alone."""
    with LocalIssuer() as local_issuer:
        yield local_issuer


@pytest.fixture(scope="module")
def attacker() -> Iterator[LocalIssuer]:
    """An attacker's own issuer: the receiver must never fetch its JWKS."""
    with LocalIssuer(audience="api://attacker") as local_issuer:
        yield local_issuer
