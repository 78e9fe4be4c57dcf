"""The receiver's configuration: every ``SECURE_EXPORT_*`` variable, validated once at start.

One exit 2 names every bad variable (docs/receiver.md, "Configuration").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from receiver.storage.postgres.connect import DbAuth
from secure_export.contract import (
    AZNS_AAD_WEBHOOK_CLIENT_ID,
    LOCAL_DB_PATH,
    SECURE_WEBHOOK_ROLE,
    SEVERITIES,
    VARIABLE_PREFIX,
)

if TYPE_CHECKING:  # the backends' modules load only when selected (receiver/http/backends.py)
    from receiver.itsm.bmc_helix.settings import BmcSettings
    from receiver.itsm.servicenow.settings import ServiceNowSettings

DEFAULT_JWKS_URI = "https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"
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

    model_config = SettingsConfigDict(env_prefix=VARIABLE_PREFIX, case_sensitive=False, extra="ignore", frozen=True)

    # --- contract variables (docs/design.md) -------------------------------------------------
    tenant_id: str
    """The Azure AD tenant (GUID) whose tokens are accepted."""
    audiences: Annotated[frozenset[str], NoDecode]
    """Accepted ``aud`` values: the application's identifier URI and/or client id."""
    allowed_callers: Annotated[frozenset[str], NoDecode] = frozenset({AZNS_AAD_WEBHOOK_CLIENT_ID})
    """Accepted ``appid`` (v1) / ``azp`` (v2): by default only Azure's action groups."""
    allowed_subscriptions: Annotated[frozenset[str] | None, NoDecode] = None
    """Subscription ids whose alerts are accepted (lower-cased); ``None`` accepts all."""
    required_role: str = SECURE_WEBHOOK_ROLE
    jwks_uri: str = ""
    """Signing keys; empty means the tenant's Azure AD v2.0 key set (filled in after validation)."""
    db: str = LOCAL_DB_PATH
    """An SQLite file (one replica), or a ``postgresql://`` libpq URL (several replicas; docs/postgresql.md)."""
    db_auth: DbAuth = "password"
    """PostgreSQL only: ``password`` (from the URL or ``PGPASSWORD``) or ``entra`` (the managed identity's token)."""
    itsm: Literal["embedded", "servicenow", "bmc-helix"] = "embedded"
    correlation: Literal["alert", "rule-target"] = "alert"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, le=64 * 1024 * 1024)
    routing: str | None = None
    """Path of the routing file (docs/routing.md); unset: every item goes to the default (no group)."""
    reopen_window: float = 3600.0
    """Seconds (or ISO 8601): a Fired whose item Azure resolved this recently reopens that item; 0: never."""
    stateless_ttl: float | None = None
    """Seconds (or ISO 8601): items of alerts Azure never resolves resolve after this long without a repeat."""

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
    priority_map: Annotated[dict[str, int], NoDecode] = Field(default_factory=lambda: dict(DEFAULT_PRIORITY_MAP))
    """Work item priority by severity, ``Sev0=1,Sev1=2,...`` (unlisted severities keep the default)."""
    inbox_busy_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    """How long an inbox write waits for a lock before the request gets 503 (Azure retries 503)."""
    inbox_retention_days: float = Field(default=30.0, ge=0)
    """Done inbox rows are kept this long (repeats within it are recognised), then deleted; 0 keeps all."""
    inbox_discarded_retention_days: float = Field(default=90.0, ge=0)
    """Discarded inbox rows are kept this long after discarding (for ``trace``), then deleted; 0 keeps all."""
    resolved_retention_days: float = Field(default=365.0, ge=0)
    """Embedded backend: Resolved and Closed work items are kept this long after resolving; 0 keeps all."""
    ops_port: int | None = Field(default=None, ge=1, le=65535)
    """Second port for ``/metrics``, detailed ``/readyz`` and the operations endpoints; unset: all on the main port."""
    ops_poll_seconds: float = Field(default=2.0, gt=0, le=300)
    """How often the receiver looks for replays and discards made by the CLI on its database."""
    activity_log_seconds: float = Field(default=60.0, gt=0, le=3600)
    """Interval of the ``dispatch_summary`` log line (accepted/applied/parked since the last one)."""
    graceful_shutdown_seconds: float = Field(default=10.0, ge=0)
    """On SIGTERM: time given to in-flight requests and backend calls before they are cut."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    flap_cycles: int = Field(default=3, ge=0, le=1000)
    """Fire/resolve cycles within the reopen window beyond which an item is flapping (0: no damping)."""
    flap_quiet: float = 900.0
    """Seconds (or ISO 8601) without a Fired after which a flapping item resolves."""
    lifecycle_sweep_seconds: float = Field(default=15.0, gt=0, le=3600)
    """How often due lifecycle resolutions (stateless TTL, flap quiet period) are looked for."""

    # --- the selected backend's own variables (private: never read from SECURE_EXPORT_SERVICENOW/_BMC) ---
    _servicenow: ServiceNowSettings | None = PrivateAttr(default=None)
    _bmc: BmcSettings | None = PrivateAttr(default=None)

    @property
    def servicenow(self) -> ServiceNowSettings | None:
        """``SECURE_EXPORT_SERVICENOW_*`` as ``load_settings(with_backend=True)`` validated them (itsm=servicenow)."""
        return self._servicenow

    @property
    def bmc(self) -> BmcSettings | None:
        """``SECURE_EXPORT_BMC_*`` as ``load_settings(with_backend=True)`` validated them (itsm=bmc-helix)."""
        return self._bmc

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

    @field_validator("itsm", "correlation", "db_auth", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("reopen_window", "flap_quiet", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        from secure_export.durations import parse_duration

        return parse_duration(value)

    @field_validator("stateless_ttl", mode="before")
    @classmethod
    def _optional_duration(cls, value: Any) -> float | None:
        from secure_export.durations import parse_duration

        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "0")):
            return None
        seconds = parse_duration(value)
        if seconds <= 0:
            return None
        return seconds

    @field_validator("routing")
    @classmethod
    def _routing_path(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("db")
    @classmethod
    def _check_db(cls, value: str) -> str:
        from receiver.storage.location import database_location  # the one reading of SECURE_EXPORT_DB

        location = database_location(value)  # a PostgreSQL URL's problems name what to change, never the URL
        location.require_directory()
        return location.path

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
        from receiver.auth.jwks import validate_jwks_uri  # the one rule for where keys may come from

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
    return VARIABLE_PREFIX + field.upper()


_NOT_ECHOED = frozenset({"db"})
"""Fields whose value is never repeated in an error: a database URL may carry a password."""


def _given(value: Any) -> str:
    """`` (got 'x')`` for a value worth echoing (the settings outside ``_NOT_ECHOED`` hold no secrets), else nothing."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        if isinstance(value, str) and "://" in value:
            from receiver.storage.postgres.connect import redact

            value = redact(value)  # a database URL may carry its password
        return f" (got {value!r})"
    return ""


def _describe_lines(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ()) if not isinstance(part, int)]
        field = loc[0] if loc else ""
        message = str(item.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        if item.get("type") == "missing":
            message = "is required but not set"
        elif field and field not in _NOT_ECHOED and "got " not in message:
            message += _given(item.get("input"))
        if field:
            lines.append(f"{env_name(field)}: {message}")
        else:
            lines.append(message)
    return list(dict.fromkeys(lines))


OTHER_VARIABLES = ("SECURE_EXPORT_ITSM_REVISION",)
"""Contract variables (docs/design.md) read outside this class, and ``SECURE_EXPORT_ITSM_REVISION``
(set by the Pulumi component so that rotated credentials start a new revision; the receiver
ignores it): never reported as unknown."""


def known_variables() -> list[str]:
    """Every ``SECURE_EXPORT_*`` name the receiver reads (for "did you mean")."""
    from receiver.itsm.bmc_helix.settings import ENV_PREFIX as BMC_PREFIX
    from receiver.itsm.bmc_helix.settings import BmcSettings
    from receiver.itsm.servicenow.settings import ENV_PREFIX as SERVICENOW_PREFIX
    from receiver.itsm.servicenow.settings import ServiceNowSettings

    names = [env_name(field) for field in ReceiverSettings.model_fields]
    names += [SERVICENOW_PREFIX + field.upper() for field in ServiceNowSettings.model_fields]
    names += [BMC_PREFIX + field.upper() for field in BmcSettings.model_fields]
    return names + list(OTHER_VARIABLES)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per ``SECURE_EXPORT_*`` variable nobody reads, with the closest known name."""
    import difflib

    known = known_variables()
    known_set = set(known)
    lines = []
    for name in sorted(key.upper() for key in environ if key.upper().startswith(VARIABLE_PREFIX)):
        if name in known_set:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else "; see docs/receiver.md for the variables"
        lines.append(f"{name}: unknown variable, ignored{hint}")
    return lines


class _BackendSettings(NamedTuple):
    """The selected backend's validated settings (at most one is set), or the lines naming what is wrong."""

    servicenow: ServiceNowSettings | None = None
    bmc: BmcSettings | None = None
    problems: tuple[str, ...] = ()


def _load_backend(itsm: str, source: Mapping[str, str]) -> _BackendSettings:
    """The chosen backend's variables (``SECURE_EXPORT_SERVICENOW_*``, ``SECURE_EXPORT_BMC_*``), validated.

    Their problems are reported with the receiver's own, so that one run (one exit 2 of ``serve``)
    lists every bad variable.
    """
    from receiver.itsm.backend_settings import BackendSettingsError

    try:
        if itsm == "servicenow":
            from receiver.itsm.servicenow.settings import ServiceNowSettings

            return _BackendSettings(servicenow=ServiceNowSettings.load(source))
        if itsm == "bmc-helix":
            from receiver.itsm.bmc_helix.settings import BmcSettings

            return _BackendSettings(bmc=BmcSettings.load(source))
    except BackendSettingsError as error:
        return _BackendSettings(problems=tuple(error.problems))
    return _BackendSettings()


def load_settings(environ: Mapping[str, str] | None = None, *, with_backend: bool = False) -> ReceiverSettings:
    """Read and validate the receiver's configuration.

    Every problem is reported in one pass, one line each: the receiver's variables, the selected
    backend's (``SECURE_EXPORT_SERVICENOW_*`` or ``SECURE_EXPORT_BMC_*``: always when the receiver's
    own are wrong, and with ``with_backend``, as ``serve`` asks), and "did you mean" for unknown names.
    With ``with_backend`` the settings carry the backend's validated settings
    (:attr:`ReceiverSettings.servicenow`, :attr:`ReceiverSettings.bmc`), which
    :func:`receiver.http.backends.create_backend` builds the backend from.

    With ``environ`` given, only that mapping is read (tests and embedded servers use this to
    avoid touching the process environment); otherwise ``os.environ``. Raises
    :class:`SettingsError` naming each bad variable, one line each.
    """
    import os

    source = os.environ if environ is None else environ
    values = {
        key[len(VARIABLE_PREFIX) :].lower(): value
        for key, value in source.items()
        if key.upper().startswith(VARIABLE_PREFIX)
    }
    problems: list[str] = []
    settings: ReceiverSettings | None = None
    try:
        if environ is None:
            settings = ReceiverSettings()  # type: ignore[call-arg]  # pydantic-settings fills the required fields from the environment
        else:
            # model_validate skips the environment source: the mapping is the whole configuration.
            settings = ReceiverSettings.model_validate(values)
    except ValidationError as error:
        problems += _describe_lines(error)
    routing_path = settings.routing if settings is not None else str(values.get("routing") or "").strip()
    if routing_path:
        from secure_export.routing import RoutingError, load_routing

        try:
            load_routing(routing_path)
        except RoutingError as error:
            problems += [f"SECURE_EXPORT_ROUTING ({routing_path}): {line}" for line in error.problems]
    itsm = settings.itsm if settings is not None else str(values.get("itsm", "")).strip().lower()
    backend = _BackendSettings()
    if settings is None or with_backend:
        backend = _load_backend(itsm, source)
        problems += backend.problems
    if problems:
        problems += unknown_variables(source)
        # One problem is one line (what `serve` prints before exiting 2); several get a line each.
        separator = "\n" if len(problems) > 1 else " "
        raise SettingsError("invalid receiver configuration:" + separator + "\n".join(problems))
    assert settings is not None
    # Private attributes stay assignable on the frozen model; only this loader sets them.
    settings._servicenow = backend.servicenow
    settings._bmc = backend.bmc
    return settings
