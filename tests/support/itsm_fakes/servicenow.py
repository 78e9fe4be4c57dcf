"""A faithful local ServiceNow instance: a real HTTP server on 127.0.0.1 for tests.

Table API, encoded queries (unknown parts dropped silently, as ServiceNow does), journal fields,
read ACLs, data policies, basic auth and OAuth, Event Management, injectable faults: the list is in
docs/servicenow.md, "The local ServiceNow used by the tests". Every method is thread-safe.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from tests.support.itsm_fakes.loopback import Answer, Fault, LoopbackFake, RecordedRequest

REFERENCE = "reference"
JOURNAL = "journal"
CHOICE = "choice"
STRING = "string"

_COMMON = {
    "sys_id": STRING,
    "sys_created_on": STRING,
    "sys_updated_on": STRING,
    "sys_created_by": STRING,
    "sys_updated_by": STRING,
    "sys_class_name": STRING,
    "sys_mod_count": STRING,
}

SCHEMAS: dict[str, dict[str, str]] = {
    "incident": _COMMON
    | {
        "number": STRING,
        "short_description": STRING,
        "description": STRING,
        "state": CHOICE,
        "incident_state": CHOICE,
        "active": STRING,
        "urgency": CHOICE,
        "impact": CHOICE,
        "priority": CHOICE,
        "correlation_id": STRING,
        "correlation_display": STRING,
        "cmdb_ci": REFERENCE,
        "assignment_group": REFERENCE,
        "caller_id": REFERENCE,
        "category": CHOICE,
        "subcategory": CHOICE,
        "contact_type": CHOICE,
        "close_code": CHOICE,
        "close_notes": STRING,
        "hold_reason": CHOICE,
        "opened_at": STRING,
        "resolved_at": STRING,
        "closed_at": STRING,
        "work_notes": JOURNAL,
        "comments": JOURNAL,
        "business_service": REFERENCE,
        "location": STRING,
        "company": STRING,
        "service_offering": STRING,
        "u_team": STRING,
    },
    "cmdb_ci": _COMMON
    | {
        "name": STRING,
        "object_id": STRING,
        "operational_status": CHOICE,
        "ip_address": STRING,
        "fqdn": STRING,
        "serial_number": STRING,
    },
    "sys_choice": _COMMON
    | {
        "name": STRING,
        "element": STRING,
        "value": STRING,
        "label": STRING,
        "inactive": STRING,
        "language": STRING,
        "sequence": STRING,
    },
    "em_event": _COMMON
    | {
        "source": STRING,
        "event_class": STRING,
        "node": STRING,
        "type": STRING,
        "resource": STRING,
        "metric_name": STRING,
        "message_key": STRING,
        "severity": CHOICE,
        "resolution_state": CHOICE,
        "time_of_event": STRING,
        "description": STRING,
        "additional_info": STRING,
        "state": CHOICE,
        "ci_type": STRING,
        "alert": STRING,
    },
    "sys_user": _COMMON | {"user_name": STRING, "name": STRING, "active": STRING, "email": STRING},
    "sys_user_group": _COMMON | {"name": STRING, "active": STRING},
    "cmdb_ci_service": _COMMON | {"name": STRING, "operational_status": CHOICE},
    "sys_journal_field": _COMMON | {"element_id": STRING, "element": STRING, "name": STRING, "value": STRING},
}

REFERENCE_TABLES = {
    "cmdb_ci": "cmdb_ci",
    "assignment_group": "sys_user_group",
    "caller_id": "sys_user",
    "business_service": "cmdb_ci_service",
}
DISPLAY_FIELD = {
    "incident": "number",
    "cmdb_ci": "name",
    "sys_user": "name",
    "sys_user_group": "name",
    "cmdb_ci_service": "name",
    "sys_choice": "label",
    "em_event": "message_key",
    "sys_journal_field": "element",
}
CHOICE_LABELS = {
    "state": {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"},
    "urgency": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
    "impact": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
    "priority": {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low", "5": "5 - Planning"},
    "severity": {"0": "Clear", "1": "Critical", "2": "Major", "3": "Minor", "4": "Warning", "5": "OK"},
}
PRIORITY = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("2", "1"): "2",
    ("1", "3"): "3",
    ("2", "2"): "3",
    ("3", "1"): "3",
    ("2", "3"): "4",
    ("3", "2"): "4",
    ("3", "3"): "5",
}

CURRENT_CLOSE_CODES = (
    "Duplicate",
    "Known error",
    "No resolution provided",
    "Resolved by caller",
    "Resolved by change",
    "Resolved by problem",
    "Resolved by request",
    "Solution provided",
    "Workaround provided",
)

_CONDITION = re.compile(
    r"^(?P<field>[a-z_][a-z0-9_.]*)"
    r"(?P<op>ISNOTEMPTY|ISEMPTY|NOT LIKE|NOT IN|STARTSWITH|ENDSWITH|LIKE|IN|!=|>=|<=|=|<|>)(?P<value>.*)$",
    re.DOTALL,
)
_TABLE_PATH = re.compile(r"^/api/now(?:/v[12])?/table/(?P<table>[A-Za-z0-9_]+)(?:/(?P<sys_id>[^/]+))?/?$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class _Token:
    username: str | None
    client_id: str
    expires_at: float
    refresh: str


@dataclass
class _Condition:
    field: str
    op: str
    value: str


@dataclass
class _Query:
    groups: list[list[list[_Condition]]] = field(default_factory=list)
    """NQ-separated queries, each a list of AND-ed groups of OR-ed conditions."""
    order: list[tuple[str, bool]] = field(default_factory=list)


class FakeServiceNow(LoopbackFake):
    """A local ServiceNow instance on 127.0.0.1 (port chosen by the OS); use as a context manager."""

    thread_name = "fake-servicenow"

    def __init__(self, *, instance_name: str = "fake") -> None:
        super().__init__()
        self.instance_name = instance_name
        self.tables: dict[str, list[dict[str, str]]] = {name: [] for name in SCHEMAS}
        self.users: dict[str, str] = {}
        self.oauth_clients: dict[str, str] = {}
        self.tokens: dict[str, _Token] = {}
        self.token_lifetime = 1800
        self.client_credentials_enabled = True
        self.closing_allowed = False
        self.close_info_policy = "data"
        """How Resolved without ``close_code``/``close_notes`` is treated through REST: ``"data"`` (the
        default, as on a stock instance) refuses it with 403 "Data Policy Exception"; ``"ui"`` models an
        instance whose rule is only a UI policy (forms only), so REST may resolve without them."""
        self.checked_choices: set[str] = {"close_code"}
        """Incident choice fields whose written value must be an active ``sys_choice``; any other value
        is dropped silently (the field keeps its old value), as a real instance does, so a wrong
        ``close_code`` surfaces as the data policy's "mandatory: Resolution code"."""
        self.hidden: dict[str, Callable[[Mapping[str, str]], bool] | None] = {}
        """Read ACLs by table: ``None`` hides every row, a predicate hides the rows it is true for."""
        self.mandatory_on_insert: set[str] = set()
        """Incident fields a data policy makes mandatory on insert (403 when missing)."""
        self.scripts_evaluated: list[str] = []
        self._numbers = itertools.count(10001)
        self.response_delay = 0.0
        """Seconds every API answer takes (a slow instance), spent outside the lock: requests overlap."""
        self.throttle_rate: float | None = None
        """Requests per second allowed (ServiceNow's rate limit rules); beyond it 429 with ``Retry-After``."""
        self.throttled = 0
        """429 answers the throttle gave."""
        self._throttle_window: list[float] = []
        for sequence, code in enumerate(CURRENT_CLOSE_CODES):
            self.insert(
                "sys_choice",
                {
                    "name": "incident",
                    "element": "close_code",
                    "value": code,
                    "label": code,
                    "inactive": "false",
                    "language": "en",
                    "sequence": str(sequence),
                },
            )
        self.insert(
            "sys_choice",
            {
                "name": "incident",
                "element": "close_code",
                "value": "Closed/Resolved by Caller",
                "label": "Closed/Resolved by Caller",
                "inactive": "true",
                "language": "en",
            },
        )

    # -- set-up ------------------------------------------------------------------------------

    def add_user(self, username: str, password: str, *, name: str | None = None) -> str:
        """A ``sys_user`` that can log in with basic auth or the password grant; returns its sys_id."""
        with self._lock:
            self.users[username] = password
            return self.insert("sys_user", {"user_name": username, "name": name or username, "active": "true"})[
                "sys_id"
            ]

    def add_oauth_client(self, client_id: str, client_secret: str) -> None:
        """An OAuth application registry entry."""
        with self._lock:
            self.oauth_clients[client_id] = client_secret

    def insert(self, table: str, values: Mapping[str, str]) -> dict[str, str]:
        """Insert a row directly (no business rules, no auth); returns a copy."""
        with self._lock:
            row = {
                "sys_id": uuid.uuid4().hex,
                "sys_created_on": _now(),
                "sys_updated_on": _now(),
                "sys_created_by": "admin",
                "sys_updated_by": "admin",
                "sys_mod_count": "0",
                "sys_class_name": table,
            }
            row |= {k: str(v) for k, v in values.items() if k in SCHEMAS[table]}
            self.tables[table].append(row)
            return dict(row)

    def rows(self, table: str, **equals: str) -> list[dict[str, str]]:
        """Copies of the stored rows whose fields equal ``equals`` (exactly)."""
        with self._lock:
            return [dict(r) for r in self.tables[table] if all(r.get(k) == v for k, v in equals.items())]

    def journal(self, sys_id: str, element: str = "work_notes") -> list[str]:
        """The journal entries of one record, oldest first."""
        return [r["value"] for r in self.rows("sys_journal_field", element_id=sys_id, element=element)]

    # -- faults ------------------------------------------------------------------------------

    def throttle(self, per_second: float | None, *, delay: float = 0.0) -> None:
        """Allow ``per_second`` API requests in any one-second window (429 with ``Retry-After`` beyond);
        every answer takes ``delay`` seconds. ``None`` lifts the limit."""
        with self._lock:
            self.throttle_rate = per_second
            self.response_delay = delay
            self._throttle_window = []

    def _over_limit(self) -> float | None:
        """Seconds until a slot frees when the rolling one-second window is full, else None (and counts the request)."""
        with self._lock:
            if self.throttle_rate is None:
                return None
            now = time.monotonic()
            self._throttle_window = [t for t in self._throttle_window if now - t < 1.0]
            if len(self._throttle_window) >= self.throttle_rate:
                self.throttled += 1
                return max(0.0, 1.0 - (now - self._throttle_window[0]))
            self._throttle_window.append(now)
            return None

    def hide(self, table: str, rows: Callable[[Mapping[str, str]], bool] | None = None) -> None:
        """A read ACL: hide ``table`` (every row, or those ``rows`` is true for) from API reads.

        As on ServiceNow, a list answer stays 200 with the hidden rows left out (empty or partial, and
        short pages do not mean the end), a record read answers 404; writes are not affected.
        """
        with self._lock:
            self.hidden[table] = rows

    def unhide(self, table: str) -> None:
        """Lift the read ACL of :meth:`hide`."""
        with self._lock:
            self.hidden.pop(table, None)

    def _visible(self, table: str, row: Mapping[str, str]) -> bool:
        if table not in self.hidden:
            return True
        rule = self.hidden[table]
        return rule is not None and not rule(row)

    def revoke_tokens(self) -> None:
        """Invalidate every issued access token server-side (the client still believes in them)."""
        with self._lock:
            for token in self.tokens.values():
                token.expires_at = 0.0

    def table_requests(self, table: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests to one table's Table API path."""
        with self._lock:
            out = []
            for r in self.requests:
                m = _TABLE_PATH.match(r.path)
                if m and m["table"] == table and (method is None or r.method == method):
                    out.append(r)
            return out

    def before_answer(self, path: str, fault: Fault | None) -> Fault | None:
        """A slow instance (:attr:`response_delay`) and its rate limit (:meth:`throttle`) on API paths."""
        if not path.startswith("/api/"):
            return fault
        if self.response_delay:
            time.sleep(self.response_delay)
        wait = self._over_limit()
        if wait is not None and fault is None:
            # Retry-After in whole seconds, as ServiceNow sends it (rounded up, at least 1).
            return Fault("status", 429, retry_after=str(max(1, int(wait + 0.999))), remaining=0)
        return fault

    def fault_answer(self, fault: Fault) -> Answer:
        """429 with ServiceNow's rate limit headers, a 5xx HTML page, or the error envelope."""
        return _fault_answer(fault)

    # -- request handling (called from the server threads) -----------------------------------

    def handle(
        self, method: str, path: str, params: dict[str, str], headers: Mapping[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request: ``(status, headers, body)``."""
        with self._lock:
            if path == "/oauth_token.do":
                return self._oauth(method, raw_body)
            who = self._authenticate(headers.get("authorization", ""))
            if who is None:
                return _error(401, "User Not Authenticated", "Required to provide Auth information")
            accept = headers.get("accept", "application/json")
            if not any(t in accept for t in ("application/json", "*/*")):
                return _error(406, "Not Acceptable", f"Accept {accept!r} is not supported")
            body: Any = None
            if method in ("POST", "PUT", "PATCH"):
                if "application/json" not in headers.get("content-type", ""):
                    return _error(
                        400 if not headers.get("content-type") else 415,
                        "Unsupported Media Type",
                        "Content-Type must be application/json",
                    )
                try:
                    body = json.loads(raw_body or b"null")
                except ValueError:
                    return _error(400, "Exception while reading request", "The payload is not valid JSON.")
            if path == "/api/global/em/jsonv2" and method == "POST":
                return self._jsonv2(body, who)
            match = _TABLE_PATH.match(path)
            if match is None:
                return _error(400, "Requested URI does not represent any resource", path)
            table, sys_id = match["table"], match["sys_id"]
            if table not in SCHEMAS:
                return _error(400, f"Invalid table {table}", None)
            if method == "GET":
                if sys_id:
                    row = self._find(table, sys_id)
                    if row is None or not self._visible(table, row):
                        return _error(
                            404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
                        )
                    return _json(200, {"result": self._render(table, row, params)})
                return self._list(table, params)
            if method == "POST" and not sys_id:
                if not isinstance(body, dict):
                    return _error(400, "Exception while reading request", "Expected a JSON object")
                return self._create(table, body, params, who)
            if method in ("PATCH", "PUT") and sys_id:
                if not isinstance(body, dict):
                    return _error(400, "Exception while reading request", "Expected a JSON object")
                return self._update(table, sys_id, body, params, who)
            if method == "DELETE" and sys_id:
                row = self._find(table, sys_id)
                if row is None:
                    return _error(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
                self.tables[table].remove(row)
                return 204, {}, b""
            return _error(405, "Method not Supported", f"{method} is not supported for this resource")

    def _authenticate(self, header: str) -> str | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return user if user in self.users and secrets.compare_digest(self.users[user], password) else None
        if scheme.lower() == "bearer":
            token = self.tokens.get(value)
            if token is None or token.expires_at <= time.monotonic():
                return None
            return token.username or f"oauth:{token.client_id}"
        return None

    def _oauth(self, method: str, raw_body: bytes) -> tuple[int, dict[str, str], bytes]:
        denied = _json(401, {"error_description": "access_denied", "error": "server_error"})
        if method != "POST":
            return denied
        form = {k: v[0] for k, v in parse_qs(raw_body.decode()).items()}
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if client_id not in self.oauth_clients or not secrets.compare_digest(self.oauth_clients[client_id], secret):
            return denied
        grant = form.get("grant_type")
        username: str | None
        if grant == "password":
            username = form.get("username", "")
            if username not in self.users or not secrets.compare_digest(self.users[username], form.get("password", "")):
                return denied
        elif grant == "client_credentials":
            if not self.client_credentials_enabled:
                return _json(400, {"error_description": "unsupported_grant_type", "error": "unsupported_grant_type"})
            username = None
        elif grant == "refresh_token":
            old = next((t for t in self.tokens.values() if t.refresh == form.get("refresh_token")), None)
            if old is None or old.client_id != client_id:
                return denied
            username = old.username
        else:
            return _json(400, {"error_description": "unsupported_grant_type", "error": "unsupported_grant_type"})
        access = secrets.token_urlsafe(24)
        refresh = secrets.token_urlsafe(24)
        self.tokens[access] = _Token(username, client_id, time.monotonic() + self.token_lifetime, refresh)
        return _json(
            200,
            {
                "access_token": access,
                "refresh_token": refresh,
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
            },
        )

    # -- tables ------------------------------------------------------------------------------

    def _find(self, table: str, sys_id: str) -> dict[str, str] | None:
        return next((r for r in self.tables[table] if r["sys_id"] == sys_id), None)

    def _list(self, table: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        query = self._parse_query(table, params.get("sysparm_query", ""))
        rows = [r for r in self.tables[table] if self._matches(r, query)]
        for name, descending in reversed(query.order):
            rows.sort(key=_sort_key(name), reverse=descending)
        offset = _int(params.get("sysparm_offset"), 0)
        limit = _int(params.get("sysparm_limit"), 10000)
        total = len(rows)
        # The limit applies before the read ACL: a page may come back short, or empty, with more to follow.
        page = [r for r in rows[offset : offset + limit] if self._visible(table, r)]
        headers = {} if params.get("sysparm_no_count") == "true" else {"X-Total-Count": str(total)}
        return _json(200, {"result": [self._render(table, r, params) for r in page]}, headers)

    def _parse_query(self, table: str, text: str) -> _Query:
        schema = SCHEMAS[table]
        query = _Query()
        current: list[list[_Condition]] = []
        query.groups.append(current)
        for part in text.split("^") if text else []:
            if part.startswith("NQ"):
                current = []
                query.groups.append(current)
                part = part[2:]
            if part.startswith("ORDERBYDESC") or part.startswith("ORDERBY"):
                descending = part.startswith("ORDERBYDESC")
                name = part.removeprefix("ORDERBYDESC") if descending else part.removeprefix("ORDERBY")
                if name in schema:  # unknown order fields are silently ignored too
                    query.order.append((name, descending))
                continue
            is_or = part.startswith("OR") and current
            condition = self._parse_condition(schema, part[2:] if is_or else part)
            if condition is None or part in ("", "EQ"):
                continue  # ServiceNow drops what it cannot understand, and keeps going
            if is_or:
                current[-1].append(condition)
            else:
                current.append([condition])
        return query

    def _parse_condition(self, schema: Mapping[str, str], part: str) -> _Condition | None:
        match = _CONDITION.match(part)
        if match is None or match["field"] not in schema:
            return None
        value = match["value"]
        if value.casefold().startswith("javascript:"):
            self.scripts_evaluated.append(value)
            value = ""
        return _Condition(match["field"], match["op"], value)

    def _matches(self, row: Mapping[str, str], query: _Query) -> bool:
        return any(all(any(_test(row, c) for c in group) for group in groups) for groups in query.groups)

    def _render(self, table: str, row: Mapping[str, str], params: Mapping[str, str]) -> dict[str, Any]:
        schema = SCHEMAS[table]
        wanted = [f.strip() for f in params.get("sysparm_fields", "").split(",") if f.strip()]
        names = [f for f in wanted if f in schema] if wanted else list(schema)
        display = params.get("sysparm_display_value", "false").lower()
        exclude_link = params.get("sysparm_exclude_reference_link", "false").lower() == "true"
        out: dict[str, Any] = {}
        for name in names:
            kind = schema[name]
            value = "" if kind == JOURNAL else row.get(name, "")
            shown = self._display(table, name, kind, value)
            if kind == REFERENCE and value:
                target = REFERENCE_TABLES.get(name, name)
                link = f"{self.url}/api/now/table/{target}/{value}"
                if display == "all":
                    out[name] = {"display_value": shown, "value": value} | ({} if exclude_link else {"link": link})
                elif display == "true":
                    out[name] = shown if exclude_link else {"display_value": shown, "link": link}
                else:
                    out[name] = value if exclude_link else {"link": link, "value": value}
            elif display == "all":
                out[name] = {"display_value": shown, "value": value}
            elif display == "true":
                out[name] = shown
            else:
                out[name] = value
        return out

    def _display(self, table: str, name: str, kind: str, value: str) -> str:
        if kind == REFERENCE and value:
            target = REFERENCE_TABLES.get(name, name)
            row = self._find(target, value) if target in SCHEMAS else None
            return row.get(DISPLAY_FIELD.get(target, "name"), "") if row else ""
        if kind == CHOICE:
            return CHOICE_LABELS.get(name, {}).get(value, value)
        return value

    def _create(
        self, table: str, body: Mapping[str, Any], params: Mapping[str, str], who: str
    ) -> tuple[int, dict[str, str], bytes]:
        schema = SCHEMAS[table]
        values = {k: _stringify(v) for k, v in body.items() if k in schema and k not in ("sys_id", "priority")}
        self._drop_unknown_choices(table, values)
        journal = {k: values.pop(k) for k in list(values) if schema[k] == JOURNAL}
        row: dict[str, str] = {
            "sys_id": uuid.uuid4().hex,
            "sys_created_on": _now(),
            "sys_updated_on": _now(),
            "sys_created_by": who,
            "sys_updated_by": who,
            "sys_mod_count": "0",
            "sys_class_name": table,
        }
        if table == "incident":
            row |= {
                "number": f"INC{next(self._numbers):07d}",
                "state": "1",
                "urgency": "3",
                "impact": "3",
                "opened_at": _now(),
            }
        row |= values
        refusal = self._business_rules(table, row, {})
        if refusal:
            return refusal
        self.tables[table].append(row)
        self._journal(table, row["sys_id"], journal, who)
        location = f"{self.url}/api/now/table/{table}/{row['sys_id']}"
        return _json(201, {"result": self._render(table, row, params)}, {"Location": location})

    def _update(
        self, table: str, sys_id: str, body: Mapping[str, Any], params: Mapping[str, str], who: str
    ) -> tuple[int, dict[str, str], bytes]:
        row = self._find(table, sys_id)
        if row is None:
            return _error(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
        schema = SCHEMAS[table]
        values = {k: _stringify(v) for k, v in body.items() if k in schema and k not in ("sys_id", "priority")}
        self._drop_unknown_choices(table, values)
        journal = {k: values.pop(k) for k in list(values) if schema[k] == JOURNAL}
        updated = dict(row) | values
        refusal = self._business_rules(table, updated, row)
        if refusal:
            return refusal
        updated["sys_updated_on"] = _now()
        updated["sys_updated_by"] = who
        updated["sys_mod_count"] = str(int(row.get("sys_mod_count", "0")) + 1)
        row.clear()
        row.update(updated)
        self._journal(table, sys_id, journal, who)
        return _json(200, {"result": self._render(table, row, params)})

    def _drop_unknown_choices(self, table: str, values: dict[str, str]) -> None:
        for name in [n for n in values if table == "incident" and n in self.checked_choices and values[n]]:
            active = {
                r.get("value")
                for r in self.tables["sys_choice"]
                if r.get("name") == table and r.get("element") == name and r.get("inactive") != "true"
            }
            if values[name] not in active:
                del values[name]

    def _business_rules(
        self, table: str, row: dict[str, str], before: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes] | None:
        if table != "incident":
            return None
        missing = sorted(f for f in self.mandatory_on_insert if not before and not row.get(f))
        if missing:
            return _error(
                403,
                "Operation Failed",
                f"Data Policy Exception: \n\tThe following fields are mandatory: {', '.join(missing)}\n",
            )
        state = row.get("state", "1")
        if state == "7" and before.get("state") != "7" and not self.closing_allowed:
            return _error(403, "Operation Failed", "Closing an incident requires the itil_admin role")
        missing_close_info = [
            label
            for field, label in (("close_code", "Resolution code"), ("close_notes", "Resolution notes"))
            if not row.get(field)
        ]
        if state == "6" and self.close_info_policy == "data" and missing_close_info:
            # The policy names form labels, not field names.
            return _error(
                403,
                "Operation Failed",
                f"Data Policy Exception: \n\tThe following fields are mandatory: {', '.join(missing_close_info)}\n",
            )
        row["incident_state"] = state
        row["active"] = "false" if state in ("7", "8") else "true"
        row["priority"] = PRIORITY.get((row.get("impact", "3"), row.get("urgency", "3")), "5")
        if state == "6" and before.get("state") != "6":
            row["resolved_at"] = _now()
        if state == "7" and before.get("state") != "7":
            row["closed_at"] = _now()
        return None

    def _journal(self, table: str, sys_id: str, entries: Mapping[str, str], who: str) -> None:
        for element, value in entries.items():
            if value:
                self.insert(
                    "sys_journal_field",
                    {"element_id": sys_id, "element": element, "name": table, "value": value, "sys_created_by": who},
                )

    def _jsonv2(self, body: Any, who: str) -> tuple[int, dict[str, str], bytes]:
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            return _error(400, "Invalid payload", 'Expected {"records": [...]}')
        count = 0
        for record in records:
            if isinstance(record, dict):
                values = {k: _stringify(v) for k, v in record.items() if k in SCHEMAS["em_event"]}
                self.insert("em_event", values | {"state": "Ready", "sys_created_by": who})
                count += 1
        return _json(200, {"result": {"Default Bulk Endpoint": f"{count} events were inserted"}})


def _fault_answer(fault: Fault) -> tuple[int, dict[str, str], bytes]:
    if fault.status == 429:
        headers = {
            "Retry-After": fault.retry_after or "1",
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Rule": uuid.uuid4().hex,
        }
        return _error(429, "Rate limit exceeded", "Rate limit of 100 requests per hour for Table API exceeded", headers)
    if fault.status in (502, 503, 504):
        page = b"<html><head><title>Service Unavailable</title></head><body>The instance is unavailable.</body></html>"
        headers = {"Content-Type": "text/html"} | ({"Retry-After": fault.retry_after} if fault.retry_after else {})
        return fault.status, headers, page
    return _error(fault.status, "Injected failure", f"HTTP {fault.status} injected by the test")


def _test(row: Mapping[str, str], condition: _Condition) -> bool:
    actual = row.get(condition.field, "").casefold()
    value = condition.value.casefold()
    op = condition.op
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    if op == "LIKE":
        return value in actual
    if op == "NOT LIKE":
        return value not in actual
    if op == "STARTSWITH":
        return actual.startswith(value)
    if op == "ENDSWITH":
        return actual.endswith(value)
    if op == "IN":
        return actual in value.split(",")
    if op == "NOT IN":
        return actual not in value.split(",")
    if op == "ISEMPTY":
        return actual == ""
    if op == "ISNOTEMPTY":
        return actual != ""
    ordered: dict[str, Callable[[str, str], bool]] = {
        "<": lambda a, b: a < b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b,
    }
    return ordered[op](actual, value)


def _sort_key(name: str) -> Callable[[Mapping[str, str]], str]:
    return lambda row: row.get(name, "")


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return str(value.get("value", ""))
    if value is None:
        return ""
    return str(value)


def _int(raw: str | None, default: int) -> int:
    try:
        return max(0, int(raw)) if raw is not None else default
    except ValueError:
        return default


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return (
        status,
        {"Content-Type": "application/json;charset=UTF-8"} | dict(headers or {}),
        json.dumps(payload).encode(),
    )


def _error(
    status: int, message: str, detail: str | None, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return _json(status, {"error": {"message": message, "detail": detail}, "status": "failure"}, headers)


def seed_instance(fake: FakeServiceNow, cis: Iterable[Mapping[str, str]] = ()) -> None:
    """Insert CIs (``name``, ``object_id``, ``sys_class_name`` …) straight into ``cmdb_ci``."""
    for ci in cis:
        fake.insert("cmdb_ci", ci)
