"""The receiver's configuration: every ``SECURE_EXPORT_*`` environment variable, validated once at start.

``load_settings()`` is the only place the environment is read. A bad or missing variable raises
:class:`SettingsError` whose message names each offending variable on its own line, so
``secure-export serve`` can print it and exit 2 without a traceback.

The variables of ``docs/design.md`` keep their exact names and defaults; the operational ones
(clock skew, JWKS refresh, dispatch retry policy, priority map, logging, timeouts) are documented
in ``docs/receiver.md``. ServiceNow settings (``SECURE_EXPORT_SERVICENOW_*``) are deliberately not
here: the ServiceNow backend reads and validates them itself, so this class never holds its secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "SECURE_EXPORT_"
AZNS_WEBHOOK_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"
"""Client id of Microsoft's first-party *AzNS AAD Webhook* application: the caller of secure webhooks."""
DEFAULT_JWKS_URI = "https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"
SEVERITIES = ("Sev0", "Sev1", "Sev2", "Sev3", "Sev4")
DEFAULT_PRIORITY_MAP: dict[str, int] = {"Sev0": 1, "Sev1": 2, "Sev2": 3, "Sev3": 4, "Sev4": 5}

_TENANT_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
"""The tenant id as Azure AD writes it into ``tid`` and ``iss``: a hyphenated GUID."""


class SettingsError(ValueError):
    """The environment does not describe a valid receiver; the message names every bad variable."""


def _split_csv(value: Any) -> Any:
    """Turn ``"a, b,,c"`` into ``["a", "b", "c"]``; leave lists (from code) alone."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class ReceiverSettings(BaseSettings):
    """Validated receiver configuration (environment variables ``SECURE_EXPORT_<FIELD>``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, extra="ignore", frozen=True
    )

    # --- contract variables (docs/design.md) -------------------------------------------------
    tenant_id: str
    """The Azure AD tenant (GUID) whose tokens are accepted."""
    audiences: Annotated[frozenset[str], NoDecode]
    """Accepted ``aud`` values: the application's identifier URI and/or client id."""
    allowed_callers: Annotated[frozenset[str], NoDecode] = frozenset({AZNS_WEBHOOK_APP_ID})
    """Accepted ``appid`` (v1) / ``azp`` (v2): by default only Azure's action groups."""
    allowed_subscriptions: Annotated[frozenset[str] | None, NoDecode] = None
    """Subscription ids whose alerts are accepted (lower-cased); ``None`` accepts all."""
    required_role: str = "ActionGroupsSecureWebhook"
    jwks_uri: str = ""
    """Signing keys; empty means the tenant's Azure AD v2.0 key set (filled in after validation)."""
    db: str = "./secure-export.db"
    itsm: Literal["embedded", "servicenow", "bmc-helix"] = "embedded"
    correlation: Literal["alert", "rule-target"] = "alert"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, le=64 * 1024 * 1024)

    # --- operational variables (docs/receiver.md) --------------------------------------------
    clock_skew_seconds: float = Field(default=60.0, ge=0, le=600)
    """Leeway for ``exp``/``nbf``."""
    jwks_refresh_seconds: float = Field(default=3600.0, gt=0)
    """Scheduled refresh of the signing keys."""
    jwks_min_refetch_seconds: float = Field(default=30.0, ge=0)
    """At most one refetch per this interval when tokens name unknown key ids."""
    token_cache_size: int = Field(default=4096, ge=0)
    """Verified tokens remembered until their ``exp`` (0 disables the cache)."""
    dispatch_max_attempts: int = Field(default=15, ge=1)
    """Backend attempts per inbox row before it is parked as failed."""
    dispatch_backoff_base_seconds: float = Field(default=1.0, gt=0)
    """First retry delay ceiling; doubles per attempt (full jitter)."""
    dispatch_backoff_cap_seconds: float = Field(default=300.0, gt=0)
    """Ceiling of any retry delay, including a backend's ``Retry-After``."""
    dispatch_concurrency: int = Field(default=8, ge=1, le=256)
    """Backend calls in flight at once (events of one correlation key are always sequential)."""
    dispatch_apply_timeout_seconds: float = Field(default=30.0, gt=0)
    """A backend call that takes longer counts as a transient failure."""
    priority_map: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_PRIORITY_MAP)
    )
    """Work item priority by severity, ``Sev0=1,Sev1=2,...`` (unlisted severities keep the default)."""
    inbox_busy_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    """How long an inbox write waits for a lock before the request gets 503 (Azure retries 503)."""
    inbox_retention_days: float = Field(default=30.0, ge=0)
    """Done inbox rows are kept this long (repeats within it are recognised), then deleted; 0 keeps all."""
    graceful_shutdown_seconds: float = Field(default=10.0, ge=0)
    """On SIGTERM: time given to in-flight requests and backend calls before they are cut."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("tenant_id")
    @classmethod
    def _check_tenant(cls, value: str) -> str:
        # Tokens carry the tenant only as a GUID (``tid`` and inside ``iss``) and the verifier
        # compares them exactly: a domain name here would reject every token, so refuse it now.
        value = value.strip()
        if not _TENANT_GUID.fullmatch(value):
            raise ValueError(
                "must be the tenant's Directory (tenant) ID, a GUID such as "
                "72f988bf-86f1-41af-91ab-2d7cd011db47 (Azure portal > Microsoft Entra ID > Overview, or "
                "`az account show --query tenantId`), not a domain name: tokens name the tenant only by its GUID"
            )
        return value.lower()

    @field_validator("audiences", "allowed_callers", mode="before")
    @classmethod
    def _split_required_list(cls, value: Any) -> Any:
        items = _split_csv(value)
        if isinstance(items, list | tuple | set | frozenset) and not items:
            raise ValueError("must list at least one value (comma-separated)")
        return items

    @field_validator("allowed_subscriptions", mode="before")
    @classmethod
    def _split_subscriptions(cls, value: Any) -> Any:
        items = _split_csv(value)
        if items is None or (isinstance(items, list | tuple | set | frozenset) and not items):
            return None
        return frozenset(str(item).strip().lower() for item in items)

    @field_validator("required_role")
    @classmethod
    def _check_role(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must name the app role (ActionGroupsSecureWebhook)")
        return value

    @field_validator("itsm", "correlation", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("db")
    @classmethod
    def _check_db(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a file path for the SQLite database")
        return value

    @field_validator("priority_map", mode="before")
    @classmethod
    def _parse_priority_map(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            pairs = list(value.items())
        elif isinstance(value, str):
            pairs = []
            for item in _split_csv(value):
                name, sep, number = item.partition("=")
                if not sep:
                    raise ValueError(f"{item!r} is not SEVERITY=PRIORITY, e.g. Sev0=1,Sev1=2")
                pairs.append((name.strip(), number.strip()))
        else:
            return value
        merged = dict(DEFAULT_PRIORITY_MAP)
        for name, number in pairs:
            canonical = next((s for s in SEVERITIES if s.lower() == str(name).lower()), None)
            if canonical is None:
                raise ValueError(f"unknown severity {name!r}; use Sev0..Sev4")
            try:
                priority = int(number)
            except (TypeError, ValueError):
                raise ValueError(f"priority for {canonical} must be a number 1..5, not {number!r}") from None
            if not 1 <= priority <= 5:
                raise ValueError(f"priority for {canonical} must be 1..5, not {priority}")
            merged[canonical] = priority
        return merged

    @model_validator(mode="after")
    def _fill_jwks_uri(self) -> ReceiverSettings:
        uri = self.jwks_uri.strip() or DEFAULT_JWKS_URI.format(tenant=self.tenant_id)
        from receiver.auth import validate_jwks_uri  # the one rule for where keys may come from

        try:
            validate_jwks_uri(uri)
        except ValueError as error:
            raise ValueError(f"SECURE_EXPORT_JWKS_URI: {error}") from None
        object.__setattr__(self, "jwks_uri", uri)
        if self.dispatch_backoff_cap_seconds < self.dispatch_backoff_base_seconds:
            raise ValueError(
                "SECURE_EXPORT_DISPATCH_BACKOFF_CAP_SECONDS must not be below "
                "SECURE_EXPORT_DISPATCH_BACKOFF_BASE_SECONDS"
            )
        return self


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return ENV_PREFIX + field.upper()


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ()) if not isinstance(part, int)]
        field = loc[0] if loc else ""
        message = str(item.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        if item.get("type") == "missing":
            message = "is required but not set"
        if field:
            lines.append(f"{env_name(field)}: {message}")
        else:
            lines.append(message)
    return "\n".join(dict.fromkeys(lines))


def load_settings(environ: Mapping[str, str] | None = None) -> ReceiverSettings:
    """Read and validate the receiver's configuration.

    With ``environ`` given, only that mapping is read (tests and embedded servers use this to
    avoid touching the process environment); otherwise ``os.environ``. Raises
    :class:`SettingsError` naming each bad variable, one line each.
    """
    problems = _backend_problems(os.environ if environ is None else environ)
    try:
        if environ is None:
            settings = ReceiverSettings()  # type: ignore[call-arg]
        else:
            values = {
                key[len(ENV_PREFIX) :].lower(): value
                for key, value in environ.items()
                if key.upper().startswith(ENV_PREFIX)
            }
            # model_validate skips the environment source: the mapping is the whole configuration.
            settings = ReceiverSettings.model_validate(values)
    except ValidationError as error:
        problems.insert(0, _describe(error))
    if problems:
        raise SettingsError("invalid receiver configuration:\n" + "\n".join(problems))
    return settings


def _backend_problems(environ: Mapping[str, str]) -> list[str]:
    """The chosen backend's own variables, checked at start with the others (BMC Helix: ``SECURE_EXPORT_BMC_*``)."""
    itsm = next((v for k, v in environ.items() if k.upper() == ENV_PREFIX + "ITSM"), "")
    if itsm.strip().lower() != "bmc-helix":
        return []
    from receiver.itsm.bmc_helix.settings import BmcSettings, BmcSettingsError

    try:
        BmcSettings.load(environ)
    except BmcSettingsError as error:
        return [str(error)]
    return []
