"""The stack configuration's pydantic models: every key, its type and its rules, and ``to_args()`` for ``SecureExport``.

The loaders that feed them (a stack file, the engine's config) are in ``secure_export.stack.loading``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, cast
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from secure_export.routing import RoutingFile
from secure_export.stack.validation import (
    check_scopes,
    check_severity,
    check_short_name,
    duration_seconds,
    is_multi_resource,
)

if TYPE_CHECKING:
    # Only the types: the components (and Pulumi) load when the program declares them, not with the config.
    from secure_export.components.alert_rules import ActivityLogAlertRuleArgs, LogAlertRuleArgs, MetricAlertRuleArgs
    from secure_export.components.receiver_database import DatabaseSettings
    from secure_export.components.secure_export import SecureExportArgs

NAMESPACE = "secure-export"
"""The project name, and the namespace of this program's config keys."""


class ConfigError(Exception):
    """The stack configuration is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


def _severity(value: Any) -> int:
    return check_severity(value)


def _duration(value: Any) -> str:
    duration_seconds(value)
    return str(value)


class DimensionConfig(_Model):
    """A dimension filter."""

    name: str
    operator: Literal["Include", "Exclude"] = "Include"
    values: list[str] = Field(min_length=1)


class _FailingPeriods(_Model):
    """Shared check of models with ``evaluation_periods`` and ``min_failing_periods``."""

    evaluation_periods: int
    min_failing_periods: int

    @model_validator(mode="after")
    def _failing_within_periods(self) -> Self:
        if self.min_failing_periods > self.evaluation_periods:
            raise ValueError("minFailingPeriods must not exceed evaluationPeriods")
        return self


class DynamicThresholdConfig(_FailingPeriods):
    """Dynamic threshold settings."""

    sensitivity: Literal["Low", "Medium", "High"]
    evaluation_periods: int = Field(default=4, ge=1, le=6)
    min_failing_periods: int = Field(default=4, ge=1, le=6)


class MetricCriterionConfig(_Model):
    """One metric criterion: static (threshold) or dynamic."""

    metric_name: str
    time_aggregation: Literal["Average", "Minimum", "Maximum", "Total", "Count"]
    operator: Literal["Equals", "GreaterThan", "GreaterThanOrEqual", "LessThan", "LessThanOrEqual", "GreaterOrLessThan"]
    name: str | None = None
    metric_namespace: str | None = None
    threshold: float | None = None
    dynamic: DynamicThresholdConfig | None = None
    dimensions: list[DimensionConfig] | None = None

    @model_validator(mode="after")
    def _static_or_dynamic(self) -> MetricCriterionConfig:
        if (self.threshold is None) == (self.dynamic is None):
            raise ValueError("give exactly one of threshold (static) or dynamic")
        if self.dynamic is not None and self.operator not in ("GreaterThan", "LessThan", "GreaterOrLessThan"):
            raise ValueError(f"operator {self.operator} is not allowed with a dynamic threshold")
        if self.dynamic is None and self.operator == "GreaterOrLessThan":
            raise ValueError("operator GreaterOrLessThan needs a dynamic threshold")
        return self


class _RuleConfig(_Model):
    name: str = Field(min_length=1, max_length=260, pattern=r"^[^<>*%&:\\?+/#|]+$")
    description: str | None = None
    scopes: list[str]
    enabled: bool = True

    @field_validator("scopes", mode="before")
    @classmethod
    def _scopes(cls, value: Any) -> Any:
        return check_scopes(value)


class _EvaluatedRuleConfig(_RuleConfig):
    severity: int
    evaluation_frequency: str
    window_size: str

    @field_validator("severity", mode="before")
    @classmethod
    def _check_severity(cls, value: Any) -> int:
        return _severity(value)

    @field_validator("evaluation_frequency", mode="before")
    @classmethod
    def _check_frequency(cls, value: Any) -> str:
        return _duration(value)

    @field_validator("window_size", mode="before")
    @classmethod
    def _check_window(cls, value: Any, info: Any) -> str:
        window = _duration(value)
        frequency = info.data.get("evaluation_frequency")
        if frequency and duration_seconds(window) < duration_seconds(frequency):
            raise ValueError(f"window {window} is shorter than the evaluation frequency {frequency}")
        return window


class MetricRuleConfig(_EvaluatedRuleConfig):
    """A metric alert rule."""

    criteria: list[MetricCriterionConfig] = Field(min_length=1)
    target_resource_type: str | None = None
    target_resource_region: str | None = None

    @model_validator(mode="after")
    def _multi_resource_target(self) -> MetricRuleConfig:
        if is_multi_resource(self.scopes) and not (self.target_resource_type and self.target_resource_region):
            raise ValueError(
                "a rule over several resources, a resource group or a subscription needs "
                "targetResourceType and targetResourceRegion"
            )
        return self


class FailingPeriodsConfig(_FailingPeriods):
    """Failing periods of a log alert."""

    evaluation_periods: int = Field(ge=1, le=6)
    min_failing_periods: int = Field(ge=1, le=6)


class LogRuleConfig(_EvaluatedRuleConfig):
    """A log search (scheduled query) alert rule."""

    query: str = Field(min_length=1)
    time_aggregation: Literal["Count", "Average", "Minimum", "Maximum", "Total"]
    operator: Literal["Equals", "GreaterThan", "GreaterThanOrEqual", "LessThan", "LessThanOrEqual"]
    threshold: float
    metric_measure_column: str | None = None
    resource_id_column: str | None = None
    dimensions: list[DimensionConfig] | None = None
    failing_periods: FailingPeriodsConfig | None = None
    mute_actions_duration: str | None = None
    auto_mitigate: bool = True

    @field_validator("mute_actions_duration", mode="before")
    @classmethod
    def _check_mute(cls, value: Any) -> Any:
        return None if value is None else _duration(value)

    @model_validator(mode="after")
    def _measure_column(self) -> LogRuleConfig:
        if self.time_aggregation != "Count" and not self.metric_measure_column:
            raise ValueError(f"timeAggregation {self.time_aggregation} needs metricMeasureColumn")
        return self


class ActivityLogRuleConfig(_RuleConfig):
    """An activity log alert rule."""

    category: Literal["Administrative", "ServiceHealth", "ResourceHealth"]
    operation_name: str | None = None
    level: Literal["Critical", "Error", "Warning", "Informational", "Verbose"] | None = None
    status: str | None = None
    incident_types: list[Literal["Incident", "Maintenance", "Informational", "ActionRequired", "Security"]] | None = (
        None
    )
    services: list[str] | None = None
    regions: list[str] | None = None
    health_statuses: list[Literal["Available", "Degraded", "Unavailable", "Unknown"]] | None = None

    @model_validator(mode="after")
    def _fields_fit_category(self) -> ActivityLogRuleConfig:
        if self.operation_name and self.category != "Administrative":
            raise ValueError("operationName applies to category Administrative only")
        if (self.incident_types or self.services or self.regions) and self.category != "ServiceHealth":
            raise ValueError("incidentTypes, services and regions apply to category ServiceHealth only")
        if self.health_statuses and self.category != "ResourceHealth":
            raise ValueError("healthStatuses applies to category ResourceHealth only")
        return self


def _unique_names(rules: list[Any]) -> list[Any]:
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"rule name {rule.name!r} is used twice")
        seen.add(rule.name)
    return rules


class AlertRulesConfig(_Model):
    """The stack's alert rules, by kind."""

    metric: list[MetricRuleConfig] = Field(default_factory=list)
    log: list[LogRuleConfig] = Field(default_factory=list)
    activity_log: list[ActivityLogRuleConfig] = Field(default_factory=list)

    @field_validator("metric", "log", "activity_log")
    @classmethod
    def _unique(cls, rules: list[Any]) -> list[Any]:
        return _unique_names(rules)


class IdentityConfig(_Model):
    """The receiver's Azure AD application."""

    display_name: str | None = None
    identifier_uri: str | None = Field(default=None, pattern=r"^(api|https)://\S+$")
    access_token_version: Literal[1, 2] = 1
    extra_owners: list[str] = Field(default_factory=list)


class EmailReceiverConfig(_Model):
    """An e-mail receiver of the action group."""

    name: str = Field(min_length=1)
    email_address: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ActionGroupConfig(_Model):
    """The action group."""

    short_name: str
    name: str | None = None
    email_receivers: list[EmailReceiverConfig] = Field(default_factory=list)

    @field_validator("short_name", mode="before")
    @classmethod
    def _check_short_name(cls, value: Any) -> str:
        return check_short_name(value)


class ImageConfig(_Model):
    """Where the receiver image comes from."""

    registry: str = Field(min_length=1)
    repository: str = Field(min_length=1)
    tag: str | None = None
    digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    registry_resource_id: str | None = Field(default=None, pattern=r"(?i)^/subscriptions/.+/registries/[^/]+$")

    @model_validator(mode="after")
    def _tag_or_digest(self) -> ImageConfig:
        if bool(self.tag) == bool(self.digest):
            raise ValueError("give exactly one of tag or digest")
        return self


POSTGRES_STORAGE_GB = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
"""Storage sizes a flexible server offers (docs/deploy-rules.md lists the source)."""


class DatabaseConfig(_Model):
    """The receiver's database: ``sqlite`` (one replica) or ``postgresql`` (several; docs/postgresql.md)."""

    kind: Literal["sqlite", "postgresql"] = "sqlite"
    sku_name: str | None = Field(default=None, pattern=r"^Standard_[A-Za-z0-9_]+$")
    sku_tier: Literal["Burstable", "GeneralPurpose", "MemoryOptimized"] | None = None
    version: Literal["13", "14", "15", "16", "17"] | None = None
    storage_size_gb: int | None = None
    backup_retention_days: int | None = Field(default=None, ge=7, le=35)
    geo_redundant_backup: bool | None = None
    high_availability: Literal["disabled", "zone-redundant"] | None = None
    network: Literal["private", "public"] | None = None
    server_name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")

    @field_validator("storage_size_gb")
    @classmethod
    def _storage(cls, value: int | None) -> int | None:
        if value is not None and value not in POSTGRES_STORAGE_GB:
            raise ValueError(f"must be one of {', '.join(map(str, POSTGRES_STORAGE_GB))} (GiB), got {value}")
        return value

    @model_validator(mode="after")
    def _fits_kind(self) -> DatabaseConfig:
        if self.kind == "sqlite":
            given = [
                to_camel(name) for name in type(self).model_fields if name != "kind" and getattr(self, name) is not None
            ]
            if given:
                raise ValueError(f"{', '.join(given)} only apply with kind postgresql (kind is sqlite)")
        if self.high_availability == "zone-redundant" and (self.sku_tier or "Burstable") == "Burstable":
            raise ValueError(
                "highAvailability zone-redundant needs skuTier GeneralPurpose or MemoryOptimized: "
                "Azure offers no high availability in the Burstable tier"
            )
        return self

    def to_args(self) -> DatabaseSettings:
        """The ``database`` argument of ReceiverService (unset fields left to its defaults)."""
        # The fields are DatabaseSettings' keys, one for one (tests/secure_export/stack/test_config.py pins it).
        return cast("DatabaseSettings", self.model_dump(exclude_none=True))


class ReceiverConfig(_Model):
    """How the receiver runs."""

    image: ImageConfig
    container_app_name: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
    itsm: Literal["embedded", "servicenow", "bmc-helix"] = "embedded"
    correlation: Literal["alert", "rule-target"] = "alert"
    allowed_callers: list[str] | None = None
    allowed_subscriptions: list[str] | None = None
    cpu: float = Field(default=0.5, gt=0, le=4)
    memory: str = Field(default="1Gi", pattern=r"^\d+(\.\d+)?Gi$")
    min_replicas: int = Field(default=1, ge=1, le=10)
    max_replicas: int = Field(default=1, ge=1, le=10)
    concurrent_requests: int = Field(default=50, ge=1, le=1000)
    log_retention_days: int = Field(default=30, ge=30, le=730)
    reopen_window: str | None = None
    """SECURE_EXPORT_REOPEN_WINDOW: seconds or ISO 8601 duration."""
    stateless_ttl: str | None = None
    """SECURE_EXPORT_STATELESS_TTL: seconds or ISO 8601 duration; unset: off."""
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    operator_emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = Field(default_factory=list)
    no_delivery_window: str = "PT1H"
    refused_token_threshold: int = Field(default=20, ge=1, le=100000)

    @field_validator("reopen_window", "stateless_ttl", mode="before")
    @classmethod
    def _lifecycle_duration(cls, value: Any) -> Any:
        if value is None:
            return None
        from secure_export.durations import parse_duration

        parse_duration(value)
        return str(value)

    @field_validator("no_delivery_window")
    @classmethod
    def _check_no_delivery_window(cls, value: Any) -> str:
        seconds = duration_seconds(value)
        if not 15 * 60 <= seconds <= 2 * 86400:
            raise ValueError(f"must be between PT15M and P2D (a log search alert's window), got {value!r}")
        return str(value)

    @model_validator(mode="after")
    def _replicas(self) -> ReceiverConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"maxReplicas {self.max_replicas} is below minReplicas {self.min_replicas}")
        if self.max_replicas > 1 and self.database.kind == "sqlite":
            raise ValueError(
                f"maxReplicas {self.max_replicas} needs database.kind postgresql: with SQLite the inbox is one file "
                "on an Azure Files share, which only one replica may write (set maxReplicas: 1, or database: "
                "{kind: postgresql})"
            )
        return self


class ServiceNowConfig(_Model):
    """The ServiceNow instance (credentials are separate, secret keys)."""

    url: str = Field(pattern=r"^https://[^/\s]+(/\S*)?$")
    target: Literal["incident", "event"] = "incident"
    username: str | None = None
    client_id: str | None = None


class BmcHelixConfig(_Model):
    """The BMC Helix AR System REST endpoint and user (the password is the secret key bmcHelixPassword)."""

    url: str = Field(pattern=r"^https://[^/\s?#@]+/?$")
    username: str = Field(min_length=1)


SERVICENOW_EM_PATH = "/api/sn_em_connector/em/inbound_event"
"""Path of ServiceNow Event Management's inbound-event API (Event Management Connectors app)."""


class DirectEndpointConfig(_Model):
    """An ITSM tool's own Secure Export endpoint: the action groups post there, no receiver is deployed."""

    tool: Literal["servicenow-em", "bmc-helix", "other"]
    url: str = Field(pattern=r"^https://[^/\s]+(/\S*)?$")

    @model_validator(mode="after")
    def _url_fits_tool(self) -> DirectEndpointConfig:
        parts = urlsplit(self.url)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "url must not carry credentials (user:password@): the action group keeps its URL in plain text; "
                "the tool authenticates the call by the Entra ID token"
            )
        if self.tool == "servicenow-em":
            query = parse_qs(parts.query)
            if parts.path.rstrip("/") != SERVICENOW_EM_PATH or query.get("source") != ["azuremonitor"]:
                raise ValueError(
                    f"url for tool servicenow-em must be Event Management's inbound-event API, "
                    f"https://<instance>.service-now.com{SERVICENOW_EM_PATH}?source=azuremonitor, got {self.url!r}"
                )
        return self


class StackConfig(_Model):
    """Everything under the ``secure-export:`` namespace of a stack file."""

    location: str = Field(min_length=1)
    resource_group_name: str = Field(min_length=1, max_length=90, pattern=r"^[-\w._()]+$")
    create_resource_group: bool = True
    tags: dict[str, str] = Field(default_factory=dict)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    action_group: ActionGroupConfig
    receiver: ReceiverConfig | None = None
    direct_endpoint: DirectEndpointConfig | None = None
    servicenow: ServiceNowConfig | None = None
    servicenow_password: SecretStr | None = None
    servicenow_client_secret: SecretStr | None = None
    bmc_helix: BmcHelixConfig | None = None
    bmc_helix_password: SecretStr | None = None
    alert_rules: AlertRulesConfig = Field(default_factory=AlertRulesConfig)
    routing: RoutingFile | None = None
    """The routing file (docs/routing.md), same model as the receiver's SECURE_EXPORT_ROUTING."""
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """Lines about what Azure accepts but that misbehaves or is a placeholder, each naming its key."""
        return list(self._warnings)

    @model_validator(mode="after")
    def _receiver_or_direct(self) -> StackConfig:
        if self.receiver is not None and self.direct_endpoint is not None:
            raise ValueError(
                f"{NAMESPACE}:receiver and {NAMESPACE}:directEndpoint exclude each other: keep receiver to deploy "
                "the bundled receiver, or directEndpoint to send alerts straight to the ITSM tool's own endpoint"
            )
        if self.receiver is None and self.direct_endpoint is None:
            raise ValueError(
                f"give {NAMESPACE}:receiver (deploy the bundled receiver) or {NAMESPACE}:directEndpoint "
                "(the ITSM tool's own Secure Export endpoint)"
            )
        if self.direct_endpoint is not None:
            unused = [
                key
                for key, value in (
                    ("servicenow", self.servicenow),
                    ("servicenowPassword", self.servicenow_password),
                    ("servicenowClientSecret", self.servicenow_client_secret),
                    ("bmcHelix", self.bmc_helix),
                    ("bmcHelixPassword", self.bmc_helix_password),
                    ("routing", self.routing),
                )
                if value
            ]
            if unused:
                raise ValueError(
                    f"{', '.join(f'{NAMESPACE}:{key}' for key in unused)} configure the bundled receiver, which "
                    f"{NAMESPACE}:directEndpoint does not deploy; remove them"
                )
        return self

    @model_validator(mode="after")
    def _servicenow_complete(self) -> StackConfig:
        if self.receiver is None or self.receiver.itsm != "servicenow":
            return self
        if self.servicenow is None:
            raise ValueError("receiver.itsm is servicenow but the servicenow key is missing")
        basic = self.servicenow.username and self.servicenow_password is not None
        oauth = self.servicenow.client_id and self.servicenow_client_secret is not None
        if not (basic or oauth):
            raise ValueError(
                "the servicenow backend needs servicenow.username with the secret servicenowPassword, "
                "or servicenow.clientId with the secret servicenowClientSecret"
            )
        return self

    @model_validator(mode="after")
    def _bmc_helix_complete(self) -> StackConfig:
        if self.receiver is None or self.receiver.itsm != "bmc-helix":
            return self
        if self.bmc_helix is None or self.bmc_helix_password is None:
            raise ValueError(
                f"receiver.itsm is bmc-helix: set {NAMESPACE}:bmcHelix (url, username) and the secret "
                f"{NAMESPACE}:bmcHelixPassword (`pulumi config set --secret {NAMESPACE}:bmcHelixPassword <password>`)"
            )
        return self

    def secret_values(self) -> list[str]:
        """Return the plaintexts of the secret keys (for masking; never log them)."""
        secrets = (self.servicenow_password, self.servicenow_client_secret, self.bmc_helix_password)
        return [s.get_secret_value() for s in secrets if s]

    def to_args(self) -> SecureExportArgs:
        """Return the ``SecureExportArgs`` for this configuration, secrets wrapped as Pulumi secrets."""
        import pulumi

        receiver = self.receiver
        servicenow = self.servicenow
        as_args = rules_as_args(self)

        def secret(value: SecretStr | None) -> pulumi.Output[str] | None:
            return pulumi.Output.secret(value.get_secret_value()) if value is not None else None

        direct = self.direct_endpoint
        # The rule models' fields are the rule TypedDicts' keys (tests/secure_export/stack/test_config.py pins it).
        metric = cast("list[MetricAlertRuleArgs]", as_args["metric"])
        log = cast("list[LogAlertRuleArgs]", as_args["log"])
        activity = cast("list[ActivityLogAlertRuleArgs]", as_args["activity_log"])
        return {
            "direct_endpoint": {"tool": direct.tool, "url": direct.url} if direct else None,
            "location": self.location,
            "resource_group_name": self.resource_group_name,
            "create_resource_group": self.create_resource_group,
            "tags": self.tags or None,
            "display_name": self.identity.display_name,
            "identifier_uri": self.identity.identifier_uri,
            "access_token_version": self.identity.access_token_version,
            "owner_object_ids": self.identity.extra_owners or None,
            "action_group_short_name": self.action_group.short_name,
            "action_group_name": self.action_group.name,
            "email_receivers": [
                {"name": e.name, "email_address": e.email_address} for e in self.action_group.email_receivers
            ]
            or None,
            "receiver": None
            if receiver is None
            else {
                "image_registry": receiver.image.registry,
                "image_repository": receiver.image.repository,
                "image_tag": receiver.image.tag,
                "image_digest": receiver.image.digest,
                "registry_resource_id": receiver.image.registry_resource_id,
                "container_app_name": receiver.container_app_name,
                "allowed_callers": receiver.allowed_callers,
                "allowed_subscriptions": receiver.allowed_subscriptions,
                "itsm": receiver.itsm,
                "correlation": receiver.correlation,
                "servicenow_url": servicenow.url if servicenow else None,
                "servicenow_target": servicenow.target if servicenow else None,
                "bmc_url": self.bmc_helix.url.rstrip("/") if self.bmc_helix else None,
                "cpu": receiver.cpu,
                "memory": receiver.memory,
                "min_replicas": receiver.min_replicas,
                "max_replicas": receiver.max_replicas,
                "concurrent_requests": receiver.concurrent_requests,
                "log_retention_days": receiver.log_retention_days,
                "routing": (
                    json.dumps(self.routing.model_dump(by_alias=True, exclude_none=True), sort_keys=True)
                    if self.routing is not None
                    else None
                ),
                "reopen_window": receiver.reopen_window,
                "stateless_ttl": receiver.stateless_ttl,
                "database": receiver.database.to_args(),
                "operator_emails": receiver.operator_emails or None,
                "no_delivery_window": receiver.no_delivery_window,
                "refused_token_threshold": receiver.refused_token_threshold,
            },
            "servicenow_username": servicenow.username if servicenow else None,
            "servicenow_password": secret(self.servicenow_password),
            "servicenow_client_id": servicenow.client_id if servicenow else None,
            "servicenow_client_secret": secret(self.servicenow_client_secret),
            "bmc_username": self.bmc_helix.username if self.bmc_helix else None,
            "bmc_password": secret(self.bmc_helix_password),
            "metric_alerts": metric or None,
            "log_alerts": log or None,
            "activity_log_alerts": activity or None,
        }


def rules_as_args(config: StackConfig) -> dict[str, list[dict[str, Any]]]:
    """The alert rules of ``config`` as the components take them: snake_case dicts, unset fields left out."""
    rules = config.alert_rules
    return {
        kind: [r.model_dump(exclude_none=True) for r in getattr(rules, kind)]
        for kind in ("metric", "log", "activity_log")
    }
