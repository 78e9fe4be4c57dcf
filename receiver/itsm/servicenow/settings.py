"""Configuration of the ServiceNow backend: every ``SECURE_EXPORT_SERVICENOW_*`` variable, validated once.

Credentials are :class:`~pydantic.SecretStr` so that neither ``repr`` nor a log line ever shows them,
and a validation error names the variable without echoing its value.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from receiver.itsm import backend_settings
from receiver.itsm.backend_settings import BackendSettingsError, RestBackendSettings
from secure_export.contract import SEVERITIES

ENV_PREFIX = "SECURE_EXPORT_SERVICENOW_"

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,79}")
_SYS_ID = re.compile(r"[0-9a-f]{32}")


class Target(enum.StrEnum):
    """Where alerts go: incidents through the Table API, or events into Event Management."""

    INCIDENT = "incident"
    EVENT = "event"


class AuthMode(enum.StrEnum):
    """How the backend authenticates; ``auto`` derives it from which credentials are set."""

    AUTO = "auto"
    BASIC = "basic"
    OAUTH_CLIENT_CREDENTIALS = "oauth-client-credentials"
    OAUTH_PASSWORD = "oauth-password"


class ImpactUrgency(BaseModel):
    """The ``impact`` and ``urgency`` an incident gets for one Azure severity (1 High .. 3 Low)."""

    impact: Annotated[int, Field(ge=1, le=3)]
    urgency: Annotated[int, Field(ge=1, le=3)]


DEFAULT_SEVERITY_MAP: dict[str, ImpactUrgency] = {
    "Sev0": ImpactUrgency(impact=1, urgency=1),
    "Sev1": ImpactUrgency(impact=1, urgency=2),
    "Sev2": ImpactUrgency(impact=2, urgency=2),
    "Sev3": ImpactUrgency(impact=2, urgency=3),
    "Sev4": ImpactUrgency(impact=3, urgency=3),
}
"""Azure severity to incident impact/urgency; ``priority`` is left to the instance's lookup rules."""

DEFAULT_EVENT_SEVERITY_MAP: dict[str, int] = {"Sev0": 1, "Sev1": 2, "Sev2": 4, "Sev3": 4, "Sev4": 5}
"""Azure severity to ``em_event.severity``, as ServiceNow's own Azure Monitor connector maps it."""


class ServiceNowSettingsError(BackendSettingsError):
    """The ``SECURE_EXPORT_SERVICENOW_*`` configuration is invalid; the message names the variables."""


class ServiceNowSettings(RestBackendSettings):
    """Every setting of the ServiceNow backend (environment ``SECURE_EXPORT_SERVICENOW_<NAME>``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    url: str
    """Instance base URL, e.g. ``https://acme.service-now.com``; plain ``http`` only for loopback."""
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    password_file: str | None = None
    """A file holding the password (a mounted secret), instead of ``_PASSWORD``; re-read when ServiceNow
    refuses the credentials, so a rotated file takes effect without a restart."""
    client_secret_file: str | None = None
    """A file holding the OAuth client secret, instead of ``_CLIENT_SECRET``; re-read like ``_PASSWORD_FILE``."""
    auth: AuthMode = AuthMode.AUTO
    """``auto``: OAuth password grant with client id and user, client credentials with a client id
    alone, basic auth with a user alone."""
    target: Target = Target.INCIDENT

    close_code: str = "Solution provided"
    """``incident.close_code`` used when resolving; checked against ``sys_choice`` at start."""
    ci_lookup_field: str = "object_id"
    """``cmdb_ci`` field holding the Azure resource id (Service Graph connector / Discovery fill ``object_id``)."""
    ci_table: str = "cmdb_ci"
    create_cis: bool = False
    """Create a CI for each resource not found; off by default: the CMDB belongs to its owners."""
    assignment_group: str | None = None
    """sys_id of the ``sys_user_group``; unset lets the instance pick one from the CI's support group."""
    category: str | None = None
    caller: str | None = None
    """sys_id of the integration ``sys_user`` set as ``caller_id``."""
    contact_type: str | None = None
    severity_map: dict[str, ImpactUrgency] = Field(default_factory=dict)
    """JSON such as ``{"Sev1": {"impact": 1, "urgency": 1}}``; severities left out keep the default."""
    event_severity_map: dict[str, Annotated[int, Field(ge=1, le=5)]] = Field(default_factory=dict)
    event_source: str = "Azure Monitor"
    rate_limit_wait_seconds: Annotated[float, Field(ge=0, le=300)] = 20.0
    """A request refused with 429 waits ``Retry-After`` and is sent again until this much waiting is spent
    (below the dispatcher's 30 s apply timeout); then the delivery is retried later like any failure."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return backend_settings.base_url(
            value,
            example="https://acme.service-now.com",
            what="the instance base URL, without query, fragment or credentials",
            allow_path=True,
        )

    @field_validator("ci_lookup_field", "ci_table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        # These go into sysparm_query and the URL path, so they must be plain column/table names.
        if not _IDENTIFIER.fullmatch(value):
            raise ValueError("must be a ServiceNow column or table name ([a-z_][a-z0-9_]*)")
        return value

    @field_validator("assignment_group", "caller")
    @classmethod
    def _sys_id(cls, value: str | None) -> str | None:
        if value is not None and not _SYS_ID.fullmatch(value):
            raise ValueError("must be a 32-character hex sys_id")
        return value

    @field_validator("severity_map", "event_severity_map", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        return backend_settings.json_value(value, '{"Sev1": {"impact": 1, "urgency": 1}}')

    @field_validator("severity_map", "event_severity_map")
    @classmethod
    def _severities(cls, value: dict[str, Any]) -> dict[str, Any]:
        return backend_settings.severity_keys(value)

    @field_validator("close_code", "event_source")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return backend_settings.not_blank(value)

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        for field in ("password", "client_secret"):
            path = values.get(f"{field}_file")
            if not path:
                continue
            if values.get(field) is not None:
                raise ValueError(f"set {ENV_PREFIX}{field.upper()} or {ENV_PREFIX}{field.upper()}_FILE, not both")
            values = {**values, field: read_secret_file(str(path), f"{ENV_PREFIX}{field.upper()}_FILE")}
        return values

    def reread_secret_files(self) -> ServiceNowSettings | None:
        """These settings with the secret files read again, or None when no file changed (or none is used)."""
        changes: dict[str, SecretStr] = {}
        for field in ("password", "client_secret"):
            path = getattr(self, f"{field}_file")
            if not path:
                continue
            value = read_secret_file(path, f"{ENV_PREFIX}{field.upper()}_FILE")
            current = getattr(self, field)
            if current is None or current.get_secret_value() != value:
                changes[field] = SecretStr(value)
        return self.model_copy(update=changes) if changes else None

    @model_validator(mode="after")
    def _credentials(self) -> ServiceNowSettings:
        mode = self.effective_auth
        have_user = bool(self.username) and self.password is not None
        have_client = bool(self.client_id) and self.client_secret is not None
        if mode is AuthMode.BASIC and not have_user:
            raise ValueError("basic auth needs SECURE_EXPORT_SERVICENOW_USERNAME and _PASSWORD")
        if mode is AuthMode.OAUTH_CLIENT_CREDENTIALS and not have_client:
            raise ValueError("OAuth client credentials need SECURE_EXPORT_SERVICENOW_CLIENT_ID and _CLIENT_SECRET")
        if mode is AuthMode.OAUTH_PASSWORD and not (have_user and have_client):
            raise ValueError(
                "the OAuth password grant needs SECURE_EXPORT_SERVICENOW_CLIENT_ID, _CLIENT_SECRET, "
                "_USERNAME and _PASSWORD"
            )
        return self

    @property
    def effective_auth(self) -> AuthMode:
        """The authentication actually used (``auto`` resolved from the credentials present)."""
        if self.auth is not AuthMode.AUTO:
            return self.auth
        have_user = bool(self.username) and self.password is not None
        have_client = bool(self.client_id) and self.client_secret is not None
        if have_client and have_user:
            return AuthMode.OAUTH_PASSWORD
        if have_client:
            return AuthMode.OAUTH_CLIENT_CREDENTIALS
        if have_user:
            return AuthMode.BASIC
        raise ValueError(
            "no credentials: set SECURE_EXPORT_SERVICENOW_USERNAME and _PASSWORD (basic), "
            "or _CLIENT_ID and _CLIENT_SECRET (OAuth)"
        )

    def impact_urgency(self, severity: str | None) -> ImpactUrgency:
        """Impact and urgency for an Azure severity (``None`` counts as :attr:`unknown_severity`)."""
        key = severity if severity in SEVERITIES else self.unknown_severity
        return self.severity_map.get(key) or DEFAULT_SEVERITY_MAP[key]

    def event_severity(self, severity: str | None) -> int:
        """``em_event.severity`` (1 Critical .. 5 OK) for an Azure severity."""
        key = severity if severity in SEVERITIES else self.unknown_severity
        return self.event_severity_map.get(key) or DEFAULT_EVENT_SEVERITY_MAP[key]

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServiceNowSettings:
        """Read and validate the environment (or only ``environ``).

        Raises :class:`ServiceNowSettingsError` naming each bad variable.
        """
        try:
            return backend_settings.load(cls, ENV_PREFIX, environ, overrides)
        except ValidationError as error:
            raise ServiceNowSettingsError(problem_lines(error), "invalid ServiceNow configuration:") from None


def read_secret_file(path: str, variable: str) -> str:
    """The secret in ``path`` without its trailing newline; ``ValueError`` naming ``variable`` (never the content)."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().rstrip("\r\n")
    except OSError as error:
        raise ValueError(f"{variable}: cannot read {path!r}: {error.strerror or error}") from None
    if not value:
        raise ValueError(f"{variable}: {path!r} is empty")
    return value


_SECRET_FIELDS = frozenset({"password", "client_secret", "username", "client_id"})
"""Fields whose values are never echoed in an error (held as secrets in the deployment)."""


def problem_lines(error: ValidationError) -> list[str]:
    """One line per problem, naming the environment variable; values are echoed except credentials."""
    return backend_settings.problem_lines(
        error, ENV_PREFIX, missing="is required", echoed=ServiceNowSettings.model_fields, secret=_SECRET_FIELDS
    )
