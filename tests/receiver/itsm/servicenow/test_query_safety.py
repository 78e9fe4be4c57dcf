"""Properties linking the backend's query guard to how an instance parses encoded queries."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.alerts.events import Condition
from receiver.itsm.markers import correlation_id, occurrence_marker
from receiver.itsm.servicenow.cmdb import query_safe
from tests.receiver.itsm.servicenow.helpers import CLIENT_ID, CLIENT_SECRET, PASSWORD, USER, event, started_backend
from tests.support.itsm_fakes.servicenow import FakeServiceNow

pytestmark = pytest.mark.anyio

_PARSER = FakeServiceNow()  # never started: only its encoded-query parser is used
# No per-example time limit: on a loaded CI machine a pause would fail a property as "Unreliable".
_NO_DEADLINE = settings(deadline=None)


@_NO_DEADLINE
@given(st.text(max_size=300))
def test_a_value_that_passes_the_guard_is_one_condition_with_that_exact_value(value: str) -> None:
    if not query_safe(value):
        return
    query = _PARSER._parse_query("cmdb_ci", f"name={value}")
    [[group]] = query.groups
    [condition] = group
    assert (condition.field, condition.op, condition.value) == ("name", "=", value)
    assert not query.order and _PARSER.scripts_evaluated == []


@_NO_DEADLINE
@given(st.text(alphabet=st.sampled_from("ab^OR=!NQjavscript:\n /."), max_size=40))
def test_the_guard_refuses_every_separator_and_script(value: str) -> None:
    if query_safe(value):
        assert "^" not in value and "\n" not in value and " " not in value
        assert "javascript:" not in value.lower()


@_NO_DEADLINE
@given(st.text(max_size=200), st.sampled_from(list(Condition)))
def test_correlation_ids_and_markers_are_query_and_like_safe(key: str, condition: Condition) -> None:
    corr = correlation_id(key)
    marker = occurrence_marker(key, condition)
    assert query_safe(corr) and len(corr) <= 100
    assert all(c.isalnum() or c == "-" for c in marker) and "_" not in marker and "%" not in marker


async def test_no_secret_or_token_reaches_a_log_record(fake: FakeServiceNow, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async with started_backend(
        fake, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, username=USER, password=PASSWORD
    ) as backend:
        await backend.apply(event(1))
        fake.revoke_tokens()
        await backend.apply(event(1, Condition.RESOLVED))
    tokens = list(fake.tokens)
    assert len(tokens) == 2
    for record in caplog.records:
        text = record.getMessage() + " " + " ".join(str(v) for v in vars(record).values())
        for secret in (PASSWORD, CLIENT_SECRET, *tokens):
            assert secret not in text
