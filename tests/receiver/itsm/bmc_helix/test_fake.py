"""The local BMC is strict where a real AR System server is: the backend's tests mean something only then."""

from __future__ import annotations

import httpx
import pytest

from tests.receiver.itsm.bmc_helix.helpers import PASSWORD, USER
from tests.support.itsm_fakes.bmc_helix import FakeBmc

ENTRY = "/api/arsys/v1/entry"


def _token(fake: FakeBmc) -> str:
    response = httpx.post(f"{fake.url}/api/jwt/login", data={"username": USER, "password": PASSWORD})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return response.text


def _get(fake: FakeBmc, path: str, token: str, scheme: str = "AR-JWT", **params: str) -> httpx.Response:
    return httpx.get(f"{fake.url}{path}", params=params, headers={"Authorization": f"{scheme} {token}"})


def _error(response: httpx.Response) -> tuple[int, int, str]:
    [item] = response.json()
    assert item["messageType"] == "ERROR"
    return response.status_code, item["messageNumber"], item.get("messageAppendedText", "")


def test_login_needs_the_right_password_and_a_form_body(fake: FakeBmc) -> None:
    wrong = httpx.post(f"{fake.url}/api/jwt/login", data={"username": USER, "password": "nope"})
    assert _error(wrong) == (401, 623, USER)
    as_json = httpx.post(f"{fake.url}/api/jwt/login", json={"username": USER, "password": PASSWORD})
    assert as_json.status_code == 415


def test_entries_need_the_ar_jwt_scheme_and_a_live_token(fake: FakeBmc) -> None:
    token = _token(fake)
    path = f"{ENTRY}/HPD:IncidentInterface"
    assert _get(fake, path, token).status_code == 200
    assert _error(_get(fake, path, token, scheme="Bearer"))[:2] == (401, 623)
    assert _error(_get(fake, path, token, scheme="ar-jwt"))[:2] == (401, 623)
    logout = httpx.post(f"{fake.url}/api/jwt/logout", headers={"Authorization": f"AR-JWT {token}"})
    assert logout.status_code == 204
    assert _get(fake, path, token).status_code == 401


def test_unknown_forms_and_fields_are_refused(fake: FakeBmc) -> None:
    token = _token(fake)
    assert _error(_get(fake, f"{ENTRY}/HPD:Incident", token)) == (404, 303, "HPD:Incident")
    bad_fields = _get(fake, f"{ENTRY}/HPD:IncidentInterface", token, fields="values(Detailed_Decription)")
    assert _error(bad_fields)[:2] == (400, 314)  # the create form's spelling, not the interface's
    create = httpx.post(
        f"{fake.url}{ENTRY}/HPD:IncidentInterface_Create",
        headers={"Authorization": f"AR-JWT {token}"},
        json={"values": {"Detailed Decription": "x"}},
    )
    assert _error(create)[:2] == (400, 314)
    assert (
        httpx.get(
            f"{fake.url}{ENTRY}/HPD:IncidentInterface_Create", headers={"Authorization": f"AR-JWT {token}"}
        ).status_code
        == 405
    )


@pytest.mark.parametrize(
    "qualification",
    [
        "'Name' = vm-web-01",  # unquoted value
        'Name = "vm-web-01"',  # unquoted field
        "'Name' = \"vm-web-01",  # unterminated string
        "'Name' == \"vm-web-01\"",  # no such operator
        "('Name' = \"a\"",  # unbalanced
        "'Name' = \"a\" AND",  # dangling AND
    ],
)
def test_qualification_syntax_is_strict(fake: FakeBmc, qualification: str) -> None:
    response = _get(fake, f"{ENTRY}/BMC.CORE:BMC_BaseElement", _token(fake), q=qualification)
    assert _error(response)[:2] == (400, 1587)


def test_qualification_escapes_and_operators(fake: FakeBmc) -> None:
    fake.add_ci("rack \"A\" 'east'", cloud_id="x")
    token = _token(fake)
    found = _get(
        fake,
        f"{ENTRY}/BMC.CORE:BMC_BaseElement",
        token,
        q="""'Name' = "rack ""A"" 'east'" AND NOT ('DatasetId' != "BMC.ASSET") OR 'Name' LIKE "zz%" """,
        fields="values(Name)",
    )
    assert [e["values"]["Name"] for e in found.json()["entries"]] == ["rack \"A\" 'east'"]
    unknown = _get(fake, f"{ENTRY}/BMC.CORE:BMC_BaseElement", token, q="'Nmae' = \"x\"")
    assert _error(unknown)[:2] == (400, 314)
