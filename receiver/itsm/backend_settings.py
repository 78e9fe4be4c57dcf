"""What the settings of the REST backends (ServiceNow, BMC Helix) share: connection limits, loading, error lines.

Each backend validates its own ``SECURE_EXPORT_<TOOL>_*`` variables; :func:`load` reads them from
the process environment or from a mapping the same way (JSON values decoded in both), and
:func:`problem_lines` names each bad variable on its own line, never echoing a credential.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from receiver.urls import is_loopback_host

SEVERITIES = ("Sev0", "Sev1", "Sev2", "Sev3", "Sev4")

Settings = TypeVar("Settings", bound=BaseSettings)


class BackendSettingsError(ValueError):
    """A backend's configuration is invalid; :attr:`problems` holds one line per bad variable."""

    def __init__(self, problems: list[str], heading: str | None = None) -> None:
        super().__init__("\n".join([heading, *problems] if heading else problems))
        self.problems = problems


class RestBackendSettings(BaseSettings):
    """The connection settings every REST backend has (subclasses set ``env_prefix``)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    unknown_severity: str = "Sev3"
    """Severity assumed when Azure sends none (budget alerts)."""
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 15.0
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    retry_after_cap_seconds: Annotated[float, Field(ge=0, le=3600)] = 300.0
    ci_cache_ttl_seconds: Annotated[float, Field(ge=0, le=86400)] = 300.0
    readiness_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 15.0
    readiness_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0
    """Budget of the ``/readyz`` probe; the receiver gives a backend 3 s in all."""
    token_refresh_margin_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
    max_connections: Annotated[int, Field(ge=1, le=100)] = 10

    @field_validator("unknown_severity")
    @classmethod
    def _unknown_severity(cls, value: str) -> str:
        return one_of(value, SEVERITIES)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what :func:`load` hands in: the process environment and a mapping are read the same way."""
        return (init_settings,)


def one_of(value: str, allowed: Iterable[str]) -> str:
    """``value`` when it is one of ``allowed``, else a ``ValueError`` listing them."""
    choices = tuple(allowed)
    if value not in choices:
        raise ValueError(f"must be one of: {', '.join(choices)}")
    return value


def not_blank(value: str) -> str:
    """``value`` stripped; a ``ValueError`` when nothing is left."""
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def severity_keys(value: dict[str, Any]) -> dict[str, Any]:
    """A severity map whose keys are all Azure severities."""
    unknown = sorted(set(value) - set(SEVERITIES))
    if unknown:
        raise ValueError(f"unknown severities {unknown}; use {', '.join(SEVERITIES)}")
    return value


def json_value(value: Any, example: str) -> Any:
    """A JSON string decoded (a mapping of variables is not decoded by the environment source)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError(f"must be JSON such as {example}") from None
    return value


def base_url(value: str, *, example: str, what: str, allow_path: bool) -> str:
    """An absolute https URL (plain http only for loopback) without query, credentials or, unless allowed, path."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"must be an absolute https URL such as {example}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must use https: credentials would travel in clear text")
    if parts.query or parts.fragment or parts.username or (not allow_path and parts.path.strip("/")):
        raise ValueError(f"must be {what}")
    return value.strip().rstrip("/")


def load(cls: type[Settings], prefix: str, environ: Mapping[str, str] | None, overrides: Mapping[str, Any]) -> Settings:
    """``cls`` from the process environment, or only from ``environ``; raises :class:`ValidationError`.

    Both are read the same way (the settings have no environment source of their own), so a JSON
    value that does not parse is a validation error naming its variable in either case.
    """
    source = os.environ if environ is None else environ
    values = {key[len(prefix) :].lower(): value for key, value in source.items() if key.upper().startswith(prefix)}
    return cls.model_validate(values | dict(overrides))


def problem_lines(
    error: ValidationError, prefix: str, *, missing: str, echoed: Iterable[str] = (), secret: Iterable[str] = ()
) -> list[str]:
    """One line per problem naming the variable; values are echoed only for ``echoed`` fields not in ``secret``."""
    echo = set(echoed) - set(secret)
    lines = []
    for item in error.errors(include_url=False):
        field = str(item["loc"][0]) if item["loc"] else ""
        name = f"{prefix}{field.upper()}" if field else f"{prefix}*"
        message = str(item["msg"]).removeprefix("Value error, ")
        given = item.get("input")
        if item["type"] == "missing":
            message = missing
        elif field in echo and isinstance(given, str | int | float) and "got " not in message:
            message += f" (got {given!r})"
        lines.append(f"{name}: {message}")
    return list(dict.fromkeys(lines))
