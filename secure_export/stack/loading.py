"""Load and validate a stack's config: from a stack file, or from the config the Pulumi engine hands the program.

Both feed the same validation (``secure_export.stack.config``); every problem becomes one line naming
the key path, e.g. ``stacks/Pulumi.prod.yaml: secure-export:alertRules.metric[2].severity: must be 0..4, got 9``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from secure_export.stack.config import NAMESPACE, ConfigError, StackConfig, rules_as_args
from secure_export.stack.deploy_rules import stack_findings
from secure_export.stack.placeholders import config_placeholders, placeholder_ciphertext

PROVIDER_NAMESPACES = ("azure-native", "azuread", "pulumi")
"""Config namespaces passed through to providers unvalidated."""
SECRET_KEYS = ("servicenowPassword", "servicenowClientSecret", "bmcHelixPassword")
"""Keys whose values must be Pulumi secrets (``pulumi config set --secret``)."""
_STACK_FILE_KEYS = {"config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"}


@dataclass(frozen=True)
class _Secure:
    """A ``secure:`` value of a stack file: ciphertext plan cannot (and need not) decrypt."""

    ciphertext: str


@dataclass
class LoadedStack:
    """A validated stack file and the flat Pulumi config it stands for."""

    config: StackConfig
    pulumi_config: dict[str, str]
    secret_keys: list[str]
    warnings: list[str]
    """The config's warnings and the stack file's own (placeholder ``secure:`` values), one line each."""


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model that holds the key at ``loc`` (its last part), following the field types."""
    import typing

    model: type[BaseModel] = StackConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return None
        candidates = [field.annotation]
        found: type[BaseModel] | None = None
        while candidates:
            kind = candidates.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found = kind
                break
            candidates.extend(arg for arg in typing.get_args(kind) if arg is not type(None))
        if found is None:
            return None
        model = found
    return model


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """`` (did you mean 'minReplicas'?)`` for a misspelt key, from the keys allowed at that place."""
    import difflib

    model = _model_at(loc)
    if model is None or not loc or not isinstance(loc[-1], str):
        return ""
    keys = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(loc[-1], keys, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f"; allowed keys: {', '.join(sorted(keys))}"


def _message(error: Any) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "required value is missing"
    if kind == "extra_forbidden":
        return "unknown key" + _did_you_mean(tuple(error.get("loc", ())))
    msg = str(error.get("msg", "invalid value"))
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    given = error.get("input")
    if isinstance(given, (str, int, float, bool)) or given is None:
        return f"{msg[0].lower()}{msg[1:]}, got {given!r}"
    return f"{msg[0].lower()}{msg[1:]}, got {type(given).__name__}"


def validate(values: dict[str, Any], secret_keys: set[str], source: str) -> StackConfig:
    """Validate the ``secure-export:`` keys (without namespace) and return the config.

    ``secret_keys`` names the keys whose values arrived as Pulumi secrets. Raises ConfigError
    with one line per problem, each naming ``source`` and the key path.
    """
    problems: list[str] = []
    data = dict(values)
    for key in SECRET_KEYS:
        if key in data and key not in secret_keys:
            problems.append(
                f"{source}: {NAMESPACE}:{key}: must be a Pulumi secret; set it with "
                f"`pulumi config set --secret {NAMESPACE}:{key} <value>`"
            )
            data.pop(key)
    try:
        config = StackConfig.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = _path(tuple(error.get("loc", ())))
            where = f"{NAMESPACE}:{loc}" if loc else NAMESPACE
            problems.append(f"{source}: {where}: {_message(error)}")
        raise ConfigError(problems) from None
    emails = [e.model_dump() for e in config.action_group.email_receivers]
    for path, finding in stack_findings(rules_as_args(config), emails, config.identity.identifier_uri):
        line = f"{source}: {NAMESPACE}:{path}: {finding.message}"
        (problems if finding.refused else config._warnings).append(line)
    if problems:
        raise ConfigError(problems)
    for path, reason in config_placeholders(config.model_dump(by_alias=True, exclude_none=True, mode="json")):
        config._warnings.append(f"{source}: {NAMESPACE}:{path}: placeholder: {reason}; replace it before `pulumi up`")
    return config


def stack_file(project_dir: Path, stack: str) -> Path:
    """Return the stack file of ``stack``; raise ConfigError naming the stacks that exist."""
    stacks_dir = project_dir / "stacks"
    path = stacks_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))
        listed = ", ".join(known) if known else "none"
        raise ConfigError([f"unknown stack {stack!r}: no {path}; stacks that exist: {listed}"])
    return path


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_stack_file(path: Path, display: str | None = None) -> LoadedStack:
    """Read and validate a stack file; raise ConfigError with one line per problem."""
    source = display or str(path)
    try:
        # libyaml's safe loader when installed: the same documents, much faster than pure-Python
        # PyYAML, which was a visible share of planning a large stack (docs/benchmarks.md).
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError([f"{source}: YAML syntax error{where}: {exc.problem}"]) from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([f"{source}: cannot read the stack file: {exc}"]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError([f"{source}: the stack file must be a mapping with a config: key"])
    problems = [f"{source}: {key}: unknown key" for key in document if key not in _STACK_FILE_KEYS]
    entries = document.get("config") or {}
    if not isinstance(entries, dict):
        raise ConfigError([*problems, f"{source}: config: must be a mapping of namespace:key to values"])

    values: dict[str, Any] = {}
    secret_keys: set[str] = set()
    pulumi_config: dict[str, str] = {}
    pulumi_secret_keys: list[str] = []
    for full_key, raw in entries.items():
        namespace, sep, key = str(full_key).partition(":")
        if not sep or not key:
            problems.append(f"{source}: {full_key}: keys must be namespaced, e.g. {NAMESPACE}:location")
            continue
        if namespace not in (NAMESPACE, *PROVIDER_NAMESPACES):
            problems.append(f"{source}: {full_key}: unknown namespace {namespace!r} (use {NAMESPACE}: or a provider's)")
            continue
        value, is_secret, nested_problem = _decode(raw)
        if nested_problem:
            problems.append(f"{source}: {full_key}: {nested_problem}")
            continue
        if isinstance(value, _Secure):
            pulumi_config[full_key] = value.ciphertext
            pulumi_secret_keys.append(full_key)
            value = value.ciphertext
        else:
            pulumi_config[full_key] = value if isinstance(value, str) else json.dumps(value)
        if namespace == NAMESPACE:
            values[key] = value
            if is_secret:
                secret_keys.add(key)
    config = _validated(values, secret_keys, source, problems)
    unreal = [
        f"{source}: {key}: placeholder: this secure value is readable text, not the ciphertext of a secret; "
        f"set it with `pulumi config set --secret {key} <value>`"
        for key in pulumi_secret_keys
        if placeholder_ciphertext(pulumi_config[key])
    ]
    return LoadedStack(
        config=config,
        pulumi_config=pulumi_config,
        secret_keys=pulumi_secret_keys,
        warnings=[*config.warnings, *unreal],
    )


def _validated(values: dict[str, Any], secret_keys: set[str], source: str, problems: list[str]) -> StackConfig:
    """Validate ``values``; raise one :class:`ConfigError` with ``problems`` found while reading and the model's."""
    try:
        config = validate(values, secret_keys, source)
    except ConfigError as exc:
        raise ConfigError([*problems, *exc.problems]) from None
    if problems:
        raise ConfigError(problems)
    return config


def _decode(raw: Any) -> tuple[Any, bool, str | None]:
    """Turn a stack-file value into (value, is_secret, problem)."""
    if isinstance(raw, dict) and set(raw) == {"secure"}:
        return _Secure(str(raw["secure"])), True, None
    if _contains_secure(raw):
        return None, False, "secure values are supported only as whole top-level values"
    return raw, False, None


def _contains_secure(value: Any) -> bool:
    if isinstance(value, dict):
        return "secure" in value and len(value) == 1 or any(_contains_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_secure(v) for v in value)
    return False


def load_pulumi_config() -> StackConfig:
    """Read and validate this program's config from the running Pulumi engine.

    Raises ConfigError with one line per problem.
    """
    import pulumi
    from pulumi.runtime.config import CONFIG, get_config_env, get_config_secret_keys_env

    entries: dict[str, Any] = {**get_config_env(), **CONFIG.get()}
    secret_full = set(get_config_secret_keys_env())
    values: dict[str, Any] = {}
    secret_keys: set[str] = set()
    problems: list[str] = []
    source = f"stack {pulumi.get_stack()}"
    for full_key, raw in entries.items():
        namespace, _, key = str(full_key).partition(":")
        if namespace != NAMESPACE:
            continue
        value: Any = raw
        if isinstance(raw, str) and raw[:1] in ("{", "["):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                problems.append(f"{source}: {full_key}: not valid JSON")
                continue
        values[key] = value
        if full_key in secret_full or pulumi.runtime.is_config_secret(full_key):
            secret_keys.add(key)
    return _validated(values, secret_keys, source, problems)
