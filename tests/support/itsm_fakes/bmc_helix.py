"""A faithful local BMC Helix ITSM (AR System REST API): a real HTTP server on 127.0.0.1 for tests.

JWT login, the incident, work log and CMDB forms with their field names, selection values and
required fields, the qualification language, BMC's business rules and the shared fault injection:
docs/bmc-helix.md, "The local BMC Helix used by the tests".
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from receiver.itsm.bmc_helix.settings import IMPACTS, REPORTED_SOURCES, RESOLVED_REASONS, SERVICE_TYPES, URGENCIES
from tests.support.itsm_fakes.loopback import Answer, Fault, LoopbackFake, RecordedRequest

CHAR, DIARY, ENUM = "char", "diary", "enum"
STATUSES = ("New", "Assigned", "In Progress", "Pending", "Resolved", "Closed", "Cancelled")
PENDING_REASONS = (
    "Client Hold",
    "Client Action Required",
    "Support Contact Hold",
    "Supplier Delivery",
    "Third Party Vendor Action Reqd",
    "Monitoring Incident",
)
ENUMS: dict[str, tuple[str, ...]] = {
    "Status": STATUSES,
    "Impact": IMPACTS,
    "Urgency": URGENCIES,
    "Reported Source": REPORTED_SOURCES,
    "Service Type": SERVICE_TYPES,
    "Service_Type": SERVICE_TYPES,
    "Status_Reason": RESOLVED_REASONS + PENDING_REASONS,
    "Priority": ("Critical", "High", "Medium", "Low"),
    "Work Log Type": (
        "General Information",
        "Customer Communication",
        "Working Log",
        "Email System",
        "Status Update",
        "Resolution Communications",
    ),
    "View Access": ("Internal", "Public"),
    "Secure Work Log": ("Yes", "No"),
    "z1D_Action": ("CREATE", "MODIFY"),
    "MarkAsDeleted": ("Yes", "No"),
}
_ROUTING = (
    "Assigned Support Company",
    "Assigned Support Organization",
    "Assigned Group",
    "Categorization Tier 1",
    "Categorization Tier 2",
    "Categorization Tier 3",
)
_SHARED = (
    "Description",
    "Impact",
    "Urgency",
    "Status",
    "Status_Reason",
    "Resolution",
    "Reported Source",
    "HPD_CI",
    "HPD_CI_ReconID",
    "Vendor Ticket Number",
    *_ROUTING,
)
FORMS: dict[str, tuple[str, ...]] = {
    "HPD:IncidentInterface_Create": (
        *_SHARED,
        "z1D_Action",
        "First_Name",
        "Last_Name",
        "Detailed_Decription",
        "Service_Type",
        "Company",
        "TemplateID",
        "Incident Number",
    ),
    "HPD:IncidentInterface": (
        *_SHARED,
        "Request ID",
        "Incident Number",
        "First Name",
        "Last Name",
        "Detailed Decription",
        "Service Type",
        "Priority",
        "Submit Date",
        "Last Modified Date",
    ),
    "HPD:WorkLog": (
        "Work Log ID",
        "Incident Number",
        "Work Log Type",
        "Description",
        "Detailed Description",
        "View Access",
        "Secure Work Log",
        "Work Log Submit Date",
        "Submitter",
    ),
    "BMC.CORE:BMC_BaseElement": (
        "InstanceId",
        "ReconciliationIdentity",
        "Name",
        "ClassId",
        "DatasetId",
        "CloudId",
        "TokenId",
        "ShortDescription",
        "MarkAsDeleted",
    ),
}
METHODS = {
    "HPD:IncidentInterface_Create": {"POST"},
    "HPD:IncidentInterface": {"GET", "PUT"},
    "HPD:WorkLog": {"GET", "POST"},
    "BMC.CORE:BMC_BaseElement": {"GET"},
}
CREATE_TO_STORED = {
    "First_Name": "First Name",
    "Last_Name": "Last Name",
    "Detailed_Decription": "Detailed Decription",
    "Service_Type": "Service Type",
}
READ_ONLY = {"Request ID", "Incident Number", "Priority", "Submit Date", "Last Modified Date", "Work Log ID"}
LIMITS = {"Description": 100, "Vendor Ticket Number": 254, "Name": 254, "HPD_CI": 254, "Assigned Group": 60}
REQUIRED_ON_CREATE = (
    "First_Name",
    "Last_Name",
    "Description",
    "Impact",
    "Urgency",
    "Status",
    "Reported Source",
    "Service_Type",
)
_ENTRY = re.compile(r"^/api/arsys/v1/entry/(?P<form>[^/]+)(?:/(?P<id>[^/]+))?/?$")
_FIELDS = re.compile(r"^values\((?P<names>[^()]*)\)$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class ArError(Exception):
    """An AR System error answer: HTTP status plus one error list entry."""

    def __init__(self, status: int, number: int, text: str, appended: str | None = None) -> None:
        super().__init__(f"{number}: {text}")
        self.status, self.number, self.text, self.appended = status, number, text, appended

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        item: dict[str, Any] = {"messageType": "ERROR", "messageNumber": self.number, "messageText": self.text}
        if self.appended is not None:
            item["messageAppendedText"] = self.appended
        return _json(self.status, [item])


@dataclass
class Parsed:
    """One qualification the fake accepted: the form, the raw text and the parsed tree."""

    form: str
    text: str
    tree: Any


class FakeBmc(LoopbackFake):
    """A local BMC Helix ITSM on 127.0.0.1 (port chosen by the OS); use as a context manager."""

    thread_name = "fake-bmc"

    def __init__(self) -> None:
        super().__init__()
        self.users: dict[str, str] = {}
        self.people: set[tuple[str, str]] = set()
        self.tokens: dict[str, float] = {}
        self.token_lifetime = 3600.0
        self.closing_allowed = False
        self.incidents: list[dict[str, Any]] = []
        self.worklogs: list[dict[str, Any]] = []
        self.cis: list[dict[str, Any]] = []
        self.qualifications: list[Parsed] = []
        self.logins: list[str] = []
        self.logouts: list[str] = []
        self._numbers = itertools.count(101)

    # -- set-up and inspection ---------------------------------------------------------------

    def add_user(self, username: str, password: str) -> None:
        """An AR user that can log in."""
        with self._lock:
            self.users[username] = password

    def add_person(self, first: str, last: str) -> None:
        """A People record (an incident's customer must be one)."""
        with self._lock:
            self.people.add((first, last))

    def add_ci(
        self, name: str, *, cloud_id: str = "", dataset: str = "BMC.ASSET", class_id: str = "BMC_COMPUTERSYSTEM"
    ) -> dict[str, Any]:
        """A CI in ``BMC.CORE:BMC_BaseElement``; returns a copy."""
        with self._lock:
            ci = {
                "InstanceId": "OI-" + uuid.uuid4().hex.upper(),
                "ReconciliationIdentity": "RE" + uuid.uuid4().hex.upper(),
                "Name": name,
                "ClassId": class_id,
                "DatasetId": dataset,
                "CloudId": cloud_id,
                "MarkAsDeleted": "No",
            }
            self.cis.append(ci)
            return dict(ci)

    def incident(self, **equals: Any) -> list[dict[str, Any]]:
        """Copies of the incidents whose fields equal ``equals``."""
        with self._lock:
            return [dict(r) for r in self.incidents if all(r.get(k) == v for k, v in equals.items())]

    def work_log(self, number: str) -> list[str]:
        """The work log entries (``Detailed Description``) of one incident, oldest first."""
        with self._lock:
            return [w["Detailed Description"] for w in self.worklogs if w["Incident Number"] == number]

    def form_requests(self, form: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded entry requests to one form."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (m := _ENTRY.match(unquote(r.path))) and m["form"] == form and (method is None or r.method == method)
            ]

    def revoke_tokens(self) -> None:
        """Invalidate every issued token server-side (the client still believes in them)."""
        with self._lock:
            self.tokens = {token: 0.0 for token in self.tokens}

    def fault_answer(self, fault: Fault) -> Answer:
        """A 5xx maintenance page, or an AR error list (429, 503 with ``Retry-After``)."""
        return _fault_answer(fault)

    # -- request handling --------------------------------------------------------------------

    def handle(
        self, method: str, path: str, params: dict[str, str], headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request: ``(status, headers, body)``."""
        with self._lock:
            try:
                if path == "/api/jwt/login":
                    return self._login(method, headers, raw)
                if path == "/api/jwt/logout":
                    return self._logout(method, headers)
                self._authenticate(headers.get("authorization", ""))
                match = _ENTRY.match(unquote(path))
                if match is None:
                    raise ArError(404, 9350, "The requested resource does not exist", path)
                form, entry_id = match["form"], match["id"]
                if form not in FORMS:
                    raise ArError(404, 303, "Form does not exist on server", form)
                if method not in METHODS[form] or (entry_id is None) == (method == "PUT"):
                    raise ArError(405, 9351, f"{method} is not supported on this resource", form)
                if method == "GET":
                    return self._list(form, params) if entry_id is None else self._get(form, entry_id, params)
                body = self._body(headers, raw)
                if method == "POST":
                    return self._create(form, body, params)
                return self._update(form, str(entry_id), body)
            except ArError as error:
                return error.answer()

    def _login(self, method: str, headers: Mapping[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if method != "POST":
            raise ArError(405, 9351, "use POST to log in")
        if "application/x-www-form-urlencoded" not in headers.get("content-type", ""):
            raise ArError(415, 9352, "login takes application/x-www-form-urlencoded")
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        user, password = form.get("username", ""), form.get("password", "")
        if user not in self.users or not secrets.compare_digest(self.users[user], password):
            raise ArError(401, 623, "Authentication failed", user)
        token = secrets.token_urlsafe(32)
        self.tokens[token] = time.monotonic() + self.token_lifetime
        self.logins.append(user)
        return 200, {"Content-Type": "text/plain;charset=UTF-8"}, token.encode()

    def _logout(self, method: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        if method != "POST":
            raise ArError(405, 9351, "use POST to log out")
        token = self._authenticate(headers.get("authorization", ""))
        del self.tokens[token]
        self.logouts.append(token)
        return 204, {}, b""

    def _authenticate(self, header: str) -> str:
        scheme, _, token = header.partition(" ")
        if scheme != "AR-JWT" or self.tokens.get(token, 0.0) <= time.monotonic():
            raise ArError(401, 623, "Authentication failed", "missing, expired or not an AR-JWT token")
        return token

    @staticmethod
    def _body(headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
        if "application/json" not in headers.get("content-type", ""):
            raise ArError(415, 9352, "Content-Type must be application/json")
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise ArError(400, 9353, "The request body is not valid JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("values"), dict):
            raise ArError(400, 9354, 'The body must be {"values": {...}}')
        return dict(body["values"])

    # -- entries -----------------------------------------------------------------------------

    def _rows(self, form: str) -> list[dict[str, Any]]:
        return {
            "HPD:IncidentInterface": self.incidents,
            "HPD:WorkLog": self.worklogs,
            "BMC.CORE:BMC_BaseElement": self.cis,
        }[form]

    def _list(self, form: str, params: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        names = _fields(form, params.get("fields"))
        rows = self._rows(form)
        if "q" in params:
            tree = _Parser(params["q"], FORMS[form]).parse()
            self.qualifications.append(Parsed(form, params["q"], tree))
            rows = [row for row in rows if _evaluate(tree, row)]
        offset, limit = _int(params.get("offset"), 0), _int(params.get("limit"), 2000)
        entries = [
            {"values": _project(row, names), "_links": {"self": [{"href": self._href(form, row)}]}}
            for row in rows[offset : offset + limit]
        ]
        return _json(200, {"entries": entries, "_links": {"self": [{"href": f"{self.url}/api/arsys/v1/entry/{form}"}]}})

    def _get(self, form: str, entry_id: str, params: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        row = self._find(form, entry_id)
        return _json(200, {"values": _project(row, _fields(form, params.get("fields")))})

    def _find(self, form: str, entry_id: str) -> dict[str, Any]:
        key = {"HPD:IncidentInterface": "Request ID", "HPD:WorkLog": "Work Log ID"}.get(form, "InstanceId")
        for row in self._rows(form):
            if row.get(key) == entry_id:
                return row
        raise ArError(404, 302, "Entry does not exist in database", entry_id)

    def _href(self, form: str, row: Mapping[str, Any]) -> str:
        key = {"HPD:IncidentInterface": "Request ID", "HPD:WorkLog": "Work Log ID"}.get(form, "InstanceId")
        return f"{self.url}/api/arsys/v1/entry/{form}/{row.get(key)}"

    def _create(
        self, form: str, values: dict[str, Any], params: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        names = _fields(form, params.get("fields")) if "fields" in params else None
        _check_values(form, values)
        if form == "HPD:WorkLog":
            row = self._new_worklog(values)
            entry = row["Work Log ID"]
        else:
            row = self._new_incident(values)
            entry = row["Request ID"]
        headers = {"Location": f"{self.url}/api/arsys/v1/entry/{form}/{entry}"}
        if names is None:
            return 201, headers, b""
        echoed = _project(row, names)
        return _json(201, {"values": echoed}, headers)

    def _new_incident(self, values: dict[str, Any]) -> dict[str, Any]:
        for name in REQUIRED_ON_CREATE:
            if not values.get(name):
                raise ArError(400, 326, "Required field cannot be blank.", name)
        if values.get("z1D_Action") != "CREATE":
            raise ArError(400, 1291053, "z1D_Action must be CREATE on HPD:IncidentInterface_Create", "z1D_Action")
        if (values["First_Name"], values["Last_Name"]) not in self.people:
            raise ArError(
                400,
                1291001,
                "The customer is not a valid People record; select a valid customer",
                f"{values['First_Name']} {values['Last_Name']}",
            )
        row = {CREATE_TO_STORED.get(k, k): v for k, v in values.items() if k not in ("z1D_Action", "Incident Number")}
        self._check_state({}, row)
        self._check_ci(row)
        number = f"INC{next(self._numbers):012d}"
        weight = IMPACTS.index(row["Impact"]) + URGENCIES.index(row["Urgency"])
        row |= {
            "Incident Number": number,
            "Request ID": f"{number}|{number}",
            "Submit Date": _now(),
            "Last Modified Date": _now(),
            "Priority": ENUMS["Priority"][min(3, weight // 2)],
        }
        self.incidents.append(row)
        return row

    def _new_worklog(self, values: dict[str, Any]) -> dict[str, Any]:
        for name in ("Incident Number", "Work Log Type", "Detailed Description"):
            if not values.get(name):
                raise ArError(400, 326, "Required field cannot be blank.", name)
        if not any(i["Incident Number"] == values["Incident Number"] for i in self.incidents):
            raise ArError(
                400, 1291002, "The incident for this work log entry does not exist", values["Incident Number"]
            )
        row = dict(values) | {
            "Work Log ID": f"WLG{len(self.worklogs) + 1:012d}",
            "Work Log Submit Date": _now(),
            "Submitter": self.logins[-1] if self.logins else "",
        }
        self.worklogs.append(row)
        return row

    def _update(self, form: str, entry_id: str, values: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        _check_values(form, values)
        locked = sorted(READ_ONLY & set(values))
        if locked:
            raise ArError(400, 1314, "The field is read-only and cannot be changed", locked[0])
        row = self._find(form, entry_id)
        changed = {**row, **values}
        for name, value in values.items():
            if value is None:
                changed.pop(name, None)
        self._check_state(row, changed)
        self._check_ci(changed)
        row.clear()
        row.update(changed | {"Last Modified Date": _now()})
        return 204, {}, b""

    def _check_state(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        status, reason = after.get("Status"), after.get("Status_Reason")
        if status == "Closed" and before.get("Status") != "Closed" and not self.closing_allowed:
            raise ArError(400, 1291010, "You do not have permission to close incidents", "Closed")
        if status == "Assigned" and not after.get("Assigned Group"):
            raise ArError(400, 1291003, "An assigned group is required for the status Assigned", "Assigned Group")
        if status == "Resolved":
            if reason not in RESOLVED_REASONS:
                raise ArError(400, 1291004, "A status reason for Resolved is required", "Status_Reason")
            if not after.get("Resolution"):
                raise ArError(400, 1291005, "The Resolution field is required when resolving an incident", "Resolution")
        elif status == "Pending":
            if reason not in PENDING_REASONS:
                raise ArError(400, 1291004, "A status reason for Pending is required", "Status_Reason")
        elif reason:
            raise ArError(400, 306, "Value does not fall within the limits specified for the field", "Status_Reason")

    def _check_ci(self, row: Mapping[str, Any]) -> None:
        recon = row.get("HPD_CI_ReconID")
        if not recon:
            return
        ci = next((c for c in self.cis if c["ReconciliationIdentity"] == recon), None)
        if ci is None or (row.get("HPD_CI") and row["HPD_CI"] != ci["Name"]):
            raise ArError(400, 1291006, "The CI is not in the CMDB", str(recon))


def _check_values(form: str, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        if name not in FORMS[form]:
            raise ArError(400, 314, "Field does not exist on current form", f"{form} : <{name}>")
        if value is None:
            continue
        if not isinstance(value, str):
            raise ArError(400, 306, "Value does not fall within the limits specified for the field", name)
        if name in ENUMS and value not in ENUMS[name]:
            raise ArError(400, 306, "Value does not fall within the limits specified for the field", name)
        if len(value) > LIMITS.get(name, 32000):
            raise ArError(400, 306, "Value does not fall within the limits specified for the field", name)


def _fields(form: str, raw: str | None) -> list[str]:
    if raw is None:
        return list(FORMS[form])
    match = _FIELDS.match(raw)
    if match is None:
        raise ArError(400, 9355, "fields must be values(Field A,Field B)", raw)
    names = [n for n in match["names"].split(",") if n]
    for name in names:
        if name not in FORMS[form]:
            raise ArError(400, 314, "Field does not exist on current form", f"{form} : <{name}>")
    return names


def _project(row: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    return {name: row.get(name) for name in names}


def _int(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit():
        raise ArError(400, 9356, "limit and offset must be non-negative integers", raw)
    return int(raw)


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return (
        status,
        {"Content-Type": "application/json;charset=UTF-8"} | dict(headers or {}),
        json.dumps(payload).encode(),
    )


# -- the qualification language ---------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<field>'(?:[^']|'')*')
  | (?P<string>"(?:[^"]|"")*")
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<null>\$NULL\$)
  | (?P<op><=|>=|!=|=|<|>|\bLIKE\b)
  | (?P<word>\bAND\b|\bOR\b|\bNOT\b)
  | (?P<paren>[()])
)""",
    re.X | re.I,
)


class _Parser:
    """Recursive descent over AR qualifications; raises AR error 1587 on anything it does not know."""

    def __init__(self, text: str, fields: tuple[str, ...]) -> None:
        self.tokens = self._tokens(text)
        self.fields = fields
        self.at = 0

    @staticmethod
    def _tokens(text: str) -> list[tuple[str, str]]:
        out, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise ArError(400, 1587, "Syntax error in qualification", text[pos : pos + 20])
            kind = match.lastgroup or ""
            out.append((kind, match.group(kind)))
            pos = match.end()
        return out

    def parse(self) -> Any:
        tree = self._or()
        if self.at != len(self.tokens):
            raise ArError(400, 1587, "Syntax error in qualification", self.tokens[self.at][1])
        return tree

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise ArError(400, 1587, "Syntax error in qualification", "unexpected end")
        self.at += 1
        return token

    def _or(self) -> Any:
        tree = self._and()
        while (t := self._peek()) and t[0] == "word" and t[1].upper() == "OR":
            self.at += 1
            tree = ("OR", tree, self._and())
        return tree

    def _and(self) -> Any:
        tree = self._not()
        while (t := self._peek()) and t[0] == "word" and t[1].upper() == "AND":
            self.at += 1
            tree = ("AND", tree, self._not())
        return tree

    def _not(self) -> Any:
        t = self._peek()
        if t and t[0] == "word" and t[1].upper() == "NOT":
            self.at += 1
            return ("NOT", self._not())
        if t and t == ("paren", "("):
            self.at += 1
            tree = self._or()
            if self._take() != ("paren", ")"):
                raise ArError(400, 1587, "Syntax error in qualification", "missing )")
            return tree
        left = self._operand()
        kind, op = self._take()
        if kind != "op":
            raise ArError(400, 1587, "Syntax error in qualification", op)
        return ("CMP", op.upper(), left, self._operand())

    def _operand(self) -> tuple[str, Any]:
        kind, text = self._take()
        if kind == "field":
            name = text[1:-1].replace("''", "'")
            if name not in self.fields:
                raise ArError(400, 314, "Field does not exist on current form", name)
            return ("field", name)
        if kind == "string":
            return ("value", text[1:-1].replace('""', '"'))
        if kind == "number":
            return ("value", text)
        if kind == "null":
            return ("value", None)
        raise ArError(400, 1587, "Syntax error in qualification", text)


def _evaluate(tree: Any, row: Mapping[str, Any]) -> bool:
    head = tree[0]
    if head == "AND":
        return _evaluate(tree[1], row) and _evaluate(tree[2], row)
    if head == "OR":
        return _evaluate(tree[1], row) or _evaluate(tree[2], row)
    if head == "NOT":
        return not _evaluate(tree[1], row)
    _, op, left, right = tree
    a, b = (row.get(x[1]) if x[0] == "field" else x[1] for x in (left, right))
    a, b = (None if v in ("", None) else str(v) for v in (a, b))
    if op == "=":
        return a == b
    if op == "!=":
        return a != b
    if a is None or b is None:
        return False
    if op == "LIKE":
        pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in b)
        return re.fullmatch(pattern, a, re.S) is not None
    order = {"<": lambda x, y: x < y, ">": lambda x, y: x > y, "<=": lambda x, y: x <= y, ">=": lambda x, y: x >= y}
    field = left[1] if left[0] == "field" else None
    if field in ENUMS and a in ENUMS[field] and b in ENUMS[field]:
        return bool(order[op](ENUMS[field].index(a), ENUMS[field].index(b)))
    return bool(order[op](a, b))


# -- HTTP plumbing ----------------------------------------------------------------------------


def _fault_answer(fault: Fault) -> tuple[int, dict[str, str], bytes]:
    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
    if fault.status in (502, 503, 504):
        page = b"<html><head><title>Service Unavailable</title></head><body>Maintenance in progress.</body></html>"
        return fault.status, {"Content-Type": "text/html"} | headers, page
    text = "Too many requests" if fault.status == 429 else f"HTTP {fault.status} injected by the test"
    return _json(fault.status, [{"messageType": "ERROR", "messageNumber": 9999, "messageText": text}], headers)
