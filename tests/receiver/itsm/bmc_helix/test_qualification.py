"""AR qualifications from alert text: whatever the text, the server reads exactly one equality on it."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.itsm.bmc_helix import qualification as q
from tests.receiver.itsm.bmc_helix.helpers import PASSWORD, USER
from tests.support.itsm_fakes.bmc_helix import _Parser

PRINTABLE = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=120)


@settings(deadline=None, max_examples=300)
@given(PRINTABLE)
def test_any_printable_value_parses_back_to_itself(text: str) -> None:
    tree = _Parser(q.equals("Name", text), ("Name",)).parse()
    assert tree == ("CMP", "=", ("field", "Name"), ("value", text))


@settings(deadline=None, max_examples=200)
@given(PRINTABLE, PRINTABLE)
def test_conjunctions_keep_their_shape(a: str, b: str) -> None:
    tree = _Parser(q.all_of(q.equals("Name", a), q.not_equals("ClassId", b)), ("Name", "ClassId")).parse()
    assert tree[0] == "AND"
    assert tree[1] == ("CMP", "=", ("field", "Name"), ("value", a))
    assert tree[2] == ("CMP", "!=", ("field", "ClassId"), ("value", b))


def test_field_names_with_quotes_are_doubled() -> None:
    assert q.field("Doug's Requests") == "'Doug''s Requests'"
    assert q.value('Robert "Bobby" Smith') == '"Robert ""Bobby"" Smith"'


@pytest.mark.parametrize("text", ["line\nbreak", "nul\x00", "tab\tbed", "x" * 256])
def test_values_that_cannot_be_written_are_refused(text: str) -> None:
    with pytest.raises(q.UnsafeValue):
        q.value(text)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60))
def test_the_live_server_finds_a_ci_by_any_name_and_only_that_one(fake, name: str) -> None:
    fake.add_ci(name)
    token = httpx.post(f"{fake.url}/api/jwt/login", data={"username": USER, "password": PASSWORD}).text
    response = httpx.get(
        f"{fake.url}/api/arsys/v1/entry/BMC.CORE:BMC_BaseElement",
        params={"q": q.equals("Name", name), "fields": "values(Name)"},
        headers={"Authorization": f"AR-JWT {token}"},
    )
    names = [e["values"]["Name"] for e in response.json()["entries"]]
    assert names and set(names) == {name}
