"""The local ServiceNow behaves like a real instance where the backend depends on it."""

from __future__ import annotations

import httpx
import pytest

from tests.receiver.itsm.servicenow.helpers import CLIENT_ID, CLIENT_SECRET, PASSWORD, USER
from tests.support.itsm_fakes.servicenow import FakeServiceNow

AUTH = (USER, PASSWORD)
JSON = {"Accept": "application/json", "Content-Type": "application/json"}


def _get(fake: FakeServiceNow, table: str, **params: str) -> httpx.Response:
    return httpx.get(f"{fake.url}/api/now/table/{table}", params=params, auth=AUTH, headers=JSON)


def test_post_answers_201_with_location_and_result_envelope(fake: FakeServiceNow) -> None:
    response = httpx.post(
        f"{fake.url}/api/now/table/incident", json={"short_description": "x", "bogus": "y"}, auth=AUTH, headers=JSON
    )
    assert response.status_code == 201
    record = response.json()["result"]
    assert response.headers["Location"].endswith(f"/api/now/table/incident/{record['sys_id']}")
    assert record["number"].startswith("INC") and record["state"] == "1"
    assert "bogus" not in record


def test_unknown_query_field_is_silently_dropped_and_matches_everything(fake: FakeServiceNow) -> None:
    for n in range(3):
        fake.insert("incident", {"short_description": f"i{n}", "correlation_id": f"c{n}"})
    assert len(_get(fake, "incident", sysparm_query="correlaton_id=c1").json()["result"]) == 3
    assert len(_get(fake, "incident", sysparm_query="correlation_id=c1").json()["result"]) == 1
    assert (
        len(
            _get(
                fake, "incident", sysparm_query="correlation_id=c1", sysparm_limit="2", sysparm_fields="sys_id,nope"
            ).json()["result"]
        )
        == 1
    )


def test_or_binds_tighter_than_and_and_orderby_sorts(fake: FakeServiceNow) -> None:
    fake.insert("cmdb_ci", {"name": "alpha", "operational_status": "1"})
    fake.insert("cmdb_ci", {"name": "beta", "operational_status": "2"})
    fake.insert("cmdb_ci", {"name": "gamma", "operational_status": "1"})
    rows = _get(
        fake, "cmdb_ci", sysparm_query="operational_status=1^name=alpha^ORname=beta", sysparm_fields="name"
    ).json()["result"]
    assert [r["name"] for r in rows] == ["alpha"]
    rows = _get(
        fake, "cmdb_ci", sysparm_query="nameLIKEa^name!=vm-web-01^ORDERBYDESCname", sysparm_fields="name"
    ).json()["result"]
    assert [r["name"] for r in rows] == ["gamma", "beta", "alpha"]


def test_not_like_is_spelt_with_a_space_and_notlike_is_dropped_like_any_unknown_part(fake: FakeServiceNow) -> None:
    """ServiceNow's operator reference spells "does not contain" ``NOT LIKE`` (``short_descriptionNOT LIKESAP``).

    ``NOTLIKE`` is not in that reference; the stand-in drops it like any part it cannot parse, so the
    query matches everything (how an instance treats a condition it does not understand; that it
    treats ``NOTLIKE`` so is an assumption, not measured). Guards: the stand-in spelling the operator
    ``NOTLIKE`` (docs/testing.md, "Mutations").
    """
    fake.insert("cmdb_ci", {"name": "db-01"})
    fake.insert("cmdb_ci", {"name": "web-02"})
    every = sorted(r["name"] for r in fake.rows("cmdb_ci"))
    rows = _get(fake, "cmdb_ci", sysparm_query="nameNOT LIKEdb", sysparm_fields="name").json()["result"]
    assert sorted(r["name"] for r in rows) == sorted(n for n in every if "db" not in n)
    rows = _get(fake, "cmdb_ci", sysparm_query="nameNOTLIKEdb", sysparm_fields="name").json()["result"]
    assert sorted(r["name"] for r in rows) == every


def test_a_read_acl_answers_200_with_an_empty_or_partial_result_not_403(fake: FakeServiceNow) -> None:
    """ServiceNow filters rows a read ACL denies out of the answer; the limit applies before the ACL."""
    for n in range(5):
        fake.insert("sys_choice", {"name": "demo", "element": "code", "value": f"v{n}", "label": f"v{n}"})
    query = {"sysparm_query": "name=demo^ORDERBYvalue", "sysparm_fields": "value"}
    fake.hide("sys_choice", rows=lambda row: row.get("value") in ("v0", "v1"))
    first = _get(fake, "sys_choice", sysparm_limit="3", **query)
    assert first.status_code == 200
    assert [r["value"] for r in first.json()["result"]] == ["v2"]  # a short page ...
    second = _get(fake, "sys_choice", sysparm_limit="3", sysparm_offset="3", **query)
    assert [r["value"] for r in second.json()["result"]] == ["v3", "v4"]  # ... and more after it
    hidden = fake.rows("sys_choice", value="v0")[0]["sys_id"]
    record = httpx.get(f"{fake.url}/api/now/table/sys_choice/{hidden}", auth=AUTH, headers=JSON)
    assert record.status_code == 404 and "ACL" in record.json()["error"]["detail"]
    fake.hide("incident")
    created = httpx.post(f"{fake.url}/api/now/table/incident", json={"short_description": "x"}, auth=AUTH, headers=JSON)
    assert created.status_code == 201  # writes are not affected by a read ACL
    listed = _get(fake, "incident")
    assert (listed.status_code, listed.json()["result"]) == (200, [])
    fake.unhide("incident")
    assert len(_get(fake, "incident").json()["result"]) == 1


def test_caret_in_a_value_splits_the_query_which_is_why_raw_text_must_never_enter_it(fake: FakeServiceNow) -> None:
    fake.insert("cmdb_ci", {"name": "a^ORname!=x"})
    rows = _get(fake, "cmdb_ci", sysparm_query="name=a^ORname!=x", sysparm_fields="name").json()["result"]
    assert len(rows) == len(fake.rows("cmdb_ci")) > 1  # the injected ^OR matched every CI


def test_javascript_values_are_evaluated_server_side(fake: FakeServiceNow) -> None:
    _get(fake, "incident", sysparm_query="caller_id=javascript:gs.getUserID()")
    assert fake.scripts_evaluated == ["javascript:gs.getUserID()"]


def test_reference_fields_follow_display_value_and_exclude_reference_link(fake: FakeServiceNow) -> None:
    ci = fake.rows("cmdb_ci")[0]
    httpx.post(
        f"{fake.url}/api/now/table/incident", json={"cmdb_ci": ci["sys_id"], "state": "2"}, auth=AUTH, headers=JSON
    )
    raw = _get(fake, "incident", sysparm_fields="cmdb_ci,state").json()["result"][0]
    assert raw["cmdb_ci"]["value"] == ci["sys_id"] and raw["cmdb_ci"]["link"].endswith(ci["sys_id"])
    flat = _get(fake, "incident", sysparm_fields="cmdb_ci", sysparm_exclude_reference_link="true").json()["result"][0]
    assert flat == {"cmdb_ci": ci["sys_id"]}
    shown = _get(
        fake,
        "incident",
        sysparm_fields="cmdb_ci,state",
        sysparm_display_value="true",
        sysparm_exclude_reference_link="true",
    ).json()["result"][0]
    assert shown == {"cmdb_ci": "vm-web-01", "state": "In Progress"}
    both = _get(fake, "incident", sysparm_fields="state", sysparm_display_value="all").json()["result"][0]
    assert both == {"state": {"display_value": "In Progress", "value": "2"}}


def test_journal_fields_read_back_empty_and_live_in_sys_journal_field(fake: FakeServiceNow) -> None:
    created = httpx.post(
        f"{fake.url}/api/now/table/incident", json={"work_notes": "first"}, auth=AUTH, headers=JSON
    ).json()["result"]
    assert created["work_notes"] == ""
    httpx.patch(
        f"{fake.url}/api/now/table/incident/{created['sys_id']}", json={"work_notes": "second"}, auth=AUTH, headers=JSON
    )
    assert fake.journal(created["sys_id"]) == ["first", "second"]


def test_resolving_without_close_code_is_refused_by_the_data_policy(fake: FakeServiceNow) -> None:
    sys_id = httpx.post(f"{fake.url}/api/now/table/incident", json={}, auth=AUTH, headers=JSON).json()["result"][
        "sys_id"
    ]
    url = f"{fake.url}/api/now/table/incident/{sys_id}"
    refused = httpx.patch(url, json={"state": "6", "close_notes": "done"}, auth=AUTH, headers=JSON)
    assert refused.status_code == 403
    assert refused.json()["status"] == "failure"
    assert "Resolution code" in refused.json()["error"]["detail"]
    closed = httpx.patch(url, json={"state": "7"}, auth=AUTH, headers=JSON)
    assert closed.status_code == 403
    ok = httpx.patch(
        url, json={"state": "6", "close_code": "Solution provided", "close_notes": "done"}, auth=AUTH, headers=JSON
    )
    assert ok.status_code == 200 and ok.json()["result"]["state"] == "6"


def test_a_close_code_that_is_no_active_choice_is_dropped_and_the_data_policy_names_it(fake: FakeServiceNow) -> None:
    sys_id = httpx.post(f"{fake.url}/api/now/table/incident", json={}, auth=AUTH, headers=JSON).json()["result"][
        "sys_id"
    ]
    url = f"{fake.url}/api/now/table/incident/{sys_id}"
    for code in ("Solved (Permanently)", "Closed/Resolved by Caller"):  # unknown; inactive
        refused = httpx.patch(
            url, json={"state": "6", "close_code": code, "close_notes": "done"}, auth=AUTH, headers=JSON
        )
        assert refused.status_code == 403 and "Resolution code" in refused.json()["error"]["detail"]
    assert fake.rows("incident", sys_id=sys_id)[0].get("close_code", "") == ""


def test_an_instance_with_only_a_ui_policy_lets_rest_resolve_without_close_info(fake: FakeServiceNow) -> None:
    fake.close_info_policy = "ui"
    sys_id = httpx.post(f"{fake.url}/api/now/table/incident", json={}, auth=AUTH, headers=JSON).json()["result"][
        "sys_id"
    ]
    resolved = httpx.patch(f"{fake.url}/api/now/table/incident/{sys_id}", json={"state": "6"}, auth=AUTH, headers=JSON)
    assert resolved.status_code == 200 and resolved.json()["result"]["state"] == "6"


def test_wrong_credentials_get_the_401_envelope(fake: FakeServiceNow) -> None:
    response = httpx.get(f"{fake.url}/api/now/table/incident", auth=(USER, "wrong"), headers=JSON)
    assert response.status_code == 401
    assert response.json() == {
        "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
        "status": "failure",
    }


@pytest.mark.parametrize("grant", ["password", "client_credentials"])
def test_oauth_grants_issue_bearer_tokens_that_expire(fake: FakeServiceNow, grant: str) -> None:
    form = {"grant_type": grant, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    if grant == "password":
        form |= {"username": USER, "password": PASSWORD}
    token = httpx.post(f"{fake.url}/oauth_token.do", data=form).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 1800
    bearer = {"Authorization": f"Bearer {token['access_token']}", "Accept": "application/json"}
    assert httpx.get(f"{fake.url}/api/now/table/incident", headers=bearer).status_code == 200
    fake.revoke_tokens()
    assert httpx.get(f"{fake.url}/api/now/table/incident", headers=bearer).status_code == 401
    bad = httpx.post(f"{fake.url}/oauth_token.do", data=form | {"client_secret": "nope"})
    assert bad.status_code == 401 and bad.json()["error_description"] == "access_denied"


def test_rate_limit_outage_and_dropped_connections_are_injectable(fake: FakeServiceNow) -> None:
    fake.rate_limit(1, retry_after=7)
    limited = _get(fake, "incident")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json()["error"]["message"] == "Rate limit exceeded"
    fake.start_outage()
    assert _get(fake, "incident").status_code == 503
    assert _get(fake, "incident").status_code == 503
    fake.end_outage()
    assert _get(fake, "incident").status_code == 200
    fake.drop_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        _get(fake, "incident")
    fake.drop_next(1, after_processing=True)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(
            f"{fake.url}/api/now/table/incident", json={"short_description": "lost answer"}, auth=AUTH, headers=JSON
        )
    assert fake.rows("incident", short_description="lost answer")


def test_jsonv2_inserts_em_event_rows(fake: FakeServiceNow) -> None:
    response = httpx.post(
        f"{fake.url}/api/global/em/jsonv2",
        auth=AUTH,
        headers=JSON,
        json={"records": [{"source": "s", "node": "n", "severity": "1", "message_key": "k"}]},
    )
    assert response.status_code == 200
    assert response.json()["result"] == {"Default Bulk Endpoint": "1 events were inserted"}
    assert fake.rows("em_event", message_key="k")[0]["node"] == "n"
