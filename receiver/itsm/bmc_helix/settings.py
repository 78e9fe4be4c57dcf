"""Configuration of the BMC Helix backend: every ``SECURE_EXPORT_BMC_*`` variable, validated once.

The password is a :class:`~pydantic.SecretStr`: no ``repr``, log line or error message shows it.
Field and form names that end up inside AR qualifications are restricted to plain names here, and
the values BMC offers for its selection fields are checked against BMC's documented lists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from receiver.itsm import backend_settings
from receiver.itsm.backend_settings import BackendSettingsError, RestBackendSettings, one_of
from secure_export.contract import SEVERITIES

ENV_PREFIX = "SECURE_EXPORT_BMC_"

IMPACTS = ("1-Extensive/Widespread", "2-Significant/Large", "3-Moderate/Limited", "4-Minor/Localized")
"""``Impact`` selection values of the incident forms."""
URGENCIES = ("1-Critical", "2-High", "3-Medium", "4-Low")
"""``Urgency`` selection values of the incident forms."""
RESOLVED_REASONS = (
    "Automated Resolution Reported",
    "Customer Follow-Up Required",
    "Future Enhancement",
    "Monitoring Incident",
    "No Further Action Required",
    "Temporary Corrective Action",
)
"""``Status_Reason`` values BMC offers with Status ``Resolved`` (docs/bmc-helix.md, [BMC-STATUS-REASON])."""
REPORTED_SOURCES = (
    "Direct Input",
    "Email",
    "External Escalation",
    "Fax",
    "Self Service",
    "Systems Management",
    "Phone",
    "Voice Mail",
    "Walk In",
    "Web",
    "Other",
    "BMC Impact Manager Event",
)
SERVICE_TYPES = (
    "User Service Restoration",
    "User Service Request",
    "Infrastructure Restoration",
    "Infrastructure Event",
)

_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9 _.-]{0,79}")
_CLASS_OR_DATASET = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,79}")


class Levels(BaseModel):
    """The ``Impact`` and ``Urgency`` an incident gets for one Azure severity."""

    impact: Annotated[int, Field(ge=1, le=4)]
    urgency: Annotated[int, Field(ge=1, le=4)]


DEFAULT_SEVERITY_MAP: dict[str, Levels] = {
    "Sev0": Levels(impact=1, urgency=1),
    "Sev1": Levels(impact=2, urgency=2),
    "Sev2": Levels(impact=3, urgency=3),
    "Sev3": Levels(impact=4, urgency=3),
    "Sev4": Levels(impact=4, urgency=4),
}
"""Azure severity to incident impact/urgency (1 highest .. 4 lowest); BMC derives ``Priority``."""


class BmcSettingsError(BackendSettingsError):
    """The ``SECURE_EXPORT_BMC_*`` configuration is invalid; the message names the variables."""


class BmcSettings(RestBackendSettings):
    """Every setting of the BMC Helix backend (environment ``SECURE_EXPORT_BMC_<NAME>``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    url: str
    """AR System REST base URL, e.g. ``https://acme-restapi.onbmc.com``; plain ``http`` only for loopback."""
    username: Annotated[str, Field(min_length=1)]
    password: SecretStr

    customer_first_name: str = "Azure"
    customer_last_name: str = "Monitor"
    """The incidents' customer (``First_Name``/``Last_Name``): a People record BMC must know."""
    reported_source: str = "Systems Management"
    service_type: str = "Infrastructure Event"
    resolved_status_reason: str = "Automated Resolution Reported"
    correlation_field: str = "Vendor Ticket Number"
    """Incident field holding the hashed correlation key (searchable, at least 46 characters)."""
    assigned_support_company: str | None = None
    assigned_support_organization: str | None = None
    assigned_group: str | None = None
    categorization_tier_1: str | None = None
    categorization_tier_2: str | None = None
    severity_map: dict[str, Levels] = Field(default_factory=dict)
    """JSON such as ``{"Sev1": {"impact": 1, "urgency": 2}}``; severities left out keep the default."""

    ci_dataset: str = "BMC.ASSET"
    ci_id_attribute: str = "CloudId"
    """CMDB attribute compared with the alert's Azure resource ids (then ``Name`` with its CI names)."""
    token_lifetime_seconds: Annotated[float, Field(gt=0, le=86400)] = 3600.0
    """How long a JWT from ``/api/jwt/login`` is reused (BMC issues them for an hour by default)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return backend_settings.base_url(
            value,
            example="https://acme-restapi.onbmc.com",
            what="the REST API base URL (scheme, host, port), without path, query or credentials",
            allow_path=False,
        )

    @field_validator("correlation_field", "ci_id_attribute")
    @classmethod
    def _field_name(cls, value: str) -> str:
        if not _FIELD_NAME.fullmatch(value):
            raise ValueError("must be an AR System field name (letters, digits, space, _ . -)")
        return value

    @field_validator("ci_dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        if not _CLASS_OR_DATASET.fullmatch(value):
            raise ValueError("must be a CMDB dataset id such as BMC.ASSET")
        return value

    @field_validator("resolved_status_reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return one_of(value, RESOLVED_REASONS)

    @field_validator("reported_source")
    @classmethod
    def _source(cls, value: str) -> str:
        return one_of(value, REPORTED_SOURCES)

    @field_validator("service_type")
    @classmethod
    def _service_type(cls, value: str) -> str:
        return one_of(value, SERVICE_TYPES)

    @field_validator("severity_map", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        return backend_settings.json_value(value, '{"Sev1": {"impact": 1, "urgency": 2}}')

    @field_validator("severity_map")
    @classmethod
    def _severities(cls, value: dict[str, Any]) -> dict[str, Any]:
        return backend_settings.severity_keys(value)

    @field_validator("customer_first_name", "customer_last_name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return backend_settings.not_blank(value)

    def levels(self, severity: str | None) -> tuple[str, str]:
        """BMC's ``Impact`` and ``Urgency`` values for an Azure severity (``None``: :attr:`unknown_severity`)."""
        key = severity if severity in SEVERITIES else self.unknown_severity
        chosen = self.severity_map.get(key) or DEFAULT_SEVERITY_MAP[key]
        return IMPACTS[chosen.impact - 1], URGENCIES[chosen.urgency - 1]

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> BmcSettings:
        """Read and validate the environment (or only ``environ``); :class:`BmcSettingsError` names each bad one."""
        try:
            return backend_settings.load(cls, ENV_PREFIX, environ, overrides)
        except ValidationError as error:
            problems = backend_settings.problem_lines(
                error, ENV_PREFIX, missing="is required with SECURE_EXPORT_ITSM=bmc-helix"
            )
            raise BmcSettingsError(problems) from None
