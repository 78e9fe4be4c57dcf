"""What would change between two offline plans of a stack: per resource, create/update/replace/delete.

Input is two plan documents (the ``plan --json`` shape, secret leaves as ``[secret:<fingerprint>]``
tokens from :mod:`secure_export.review.plan_side`). Only inputs are compared: made-up outputs are
not properties, and a made-up value that an input carries (an id, an object id) is compared as a
reference to the resource that made it up, so two offline engines that invent different ids agree.
docs/review.md has the rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from secure_export.review.replacement import forces_replacement

Op = Literal["create", "update", "replace", "delete"]
SECRET_SHOWN = "[secret]"
UNKNOWN = "output<string>"
"""What a property that references a replaced resource becomes: Pulumi's word for known after apply."""
_SECRET_TOKEN = re.compile(r"\[secret:[0-9a-f]+\]")
_REFERENCE = re.compile(r"\$\{([^}]+)\.([A-Za-z0-9_]+)\}")
_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")
_MIN_MADE_UP = 8  # shorter outputs (a "default", a port) could be anything; never treat them as made up


@dataclass(frozen=True)
class PropertyChange:
    """One changed leaf (or whole value) of a resource's inputs; secrets already shown as ``[secret]``."""

    path: str
    old: Any
    new: Any
    replaces: bool = False


@dataclass
class ResourceChange:
    """What happens to one resource, with every changed property path."""

    op: Op
    type: str
    name: str
    properties: list[PropertyChange] = field(default_factory=list)


@dataclass
class DiffResult:
    """The changes between the base plan and the working tree's, and how many resources stay as they are."""

    stack: str
    base: str
    changes: list[ResourceChange]
    unchanged: int

    def counts(self) -> dict[str, int]:
        """Return how many resources each operation touches, in the order a summary lists them."""
        out = {"create": 0, "update": 0, "replace": 0, "delete": 0}
        for change in self.changes:
            out[change.op] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        """Return the ``diff --json`` contract of docs/design.md."""
        return {
            "stack": self.stack,
            "base": self.base,
            "changes": [
                {
                    "op": c.op,
                    "type": c.type,
                    "name": c.name,
                    "properties": [{"path": p.path, "old": p.old, "new": p.new} for p in c.properties],
                }
                for c in self.changes
            ],
        }


def shown(value: Any) -> Any:
    """Return ``value`` as a person may see it: every secret fingerprint becomes ``[secret]``."""
    if isinstance(value, str):
        return _SECRET_TOKEN.sub(SECRET_SHOWN, value)
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shown(v) for v in value]
    return value


def join(path: str, key: str | int) -> str:
    """Append a map key (``a.b``, or ``a["x.y"]`` when it is not a plain name) or a list index (``a[0]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]'


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (path, value) for every leaf; an empty map or list is a leaf of its own."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, join(path, str(key)))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaves(item, join(path, index))
    else:
        yield path, value


def _same(old: Any, new: Any) -> bool:
    # True == 1 in Python; a flag that became a number is a change.
    return (
        type(old) is type(new)
        and old == new
        or (
            isinstance(old, (int, float))
            and isinstance(new, (int, float))
            and not isinstance(old, bool)
            and not isinstance(new, bool)
            and old == new
        )
    )


def compare(old: Any, new: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Yield (path, old, new) for every leaf that differs; absent and null are the same."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            yield from compare(old.get(key), new.get(key), join(path, str(key)))
    elif isinstance(old, list) and isinstance(new, list):
        # By index, as `pulumi preview --diff` compares lists.
        for index in range(max(len(old), len(new))):
            yield from compare(
                old[index] if index < len(old) else None,
                new[index] if index < len(new) else None,
                join(path, index),
            )
    elif old is None and isinstance(new, (dict, list)) and new:
        for sub, value in leaves(new, path):
            yield sub, None, value
    elif new is None and isinstance(old, (dict, list)) and old:
        for sub, value in leaves(old, path):
            yield sub, value, None
    elif not _same(old, new):
        yield path, old, new


def _same_location(old: Any, new: Any) -> bool:
    # Azure treats "West Europe" and "westeurope" as one region; so does the provider's diff.
    def norm(v: Any) -> Any:
        return v.replace(" ", "").lower() if isinstance(v, str) else v

    return bool(norm(old) == norm(new))


class _References:
    """Made-up values of one plan, each replaced in inputs by ``${resource.output}``."""

    def __init__(self, resources: Iterable[Mapping[str, Any]]) -> None:
        made_up: dict[str, str] = {}
        for resource in resources:
            own = {v for _, v in leaves(resource.get("inputs") or {}) if isinstance(v, str)}
            for key, value in (resource.get("outputs") or {}).items():
                if isinstance(value, str) and len(value) >= _MIN_MADE_UP and value not in own:
                    made_up.setdefault(value, f"${{{resource['name']}.{key}}}")
        self._exact = made_up
        ordered = sorted(made_up, key=len, reverse=True)  # an id before the name inside it
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def apply(self, value: Any) -> Any:
        if isinstance(value, str):
            if value in self._exact:
                return self._exact[value]
            if self._pattern is None:
                return value
            return self._pattern.sub(lambda m: self._exact[m.group(0)], value)
        if isinstance(value, dict):
            return {k: self.apply(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.apply(v) for v in value]
        return value


Key = tuple[str, str]


def _indexed(plan: Mapping[str, Any] | None) -> dict[Key, dict[str, Any]]:
    if not plan:
        return {}
    refs = _References(plan.get("resources") or [])
    out: dict[Key, dict[str, Any]] = {}
    for resource in plan.get("resources") or []:
        out[(resource["type"], resource["name"])] = refs.apply(resource.get("inputs") or {})
    return out


def _changes(typ: str, old: dict[str, Any], new: dict[str, Any]) -> list[PropertyChange]:
    found = []
    for path, before, after in compare(old, new):
        if path == "location" and typ.startswith("azure-native:") and _same_location(before, after):
            continue
        found.append(PropertyChange(path, shown(before), shown(after), forces_replacement(typ, path)))
    return found


def _path_order(path: str) -> list[tuple[int, Any]]:
    # a[2] before a[10]: list indexes compare as numbers.
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[\[\].]+", path) if part]


def _referenced(value: Any) -> set[str]:
    return {m.group(1) for _, leaf in leaves(value) if isinstance(leaf, str) for m in _REFERENCE.finditer(leaf)}


def diff_plans(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, *, stack: str, base: str) -> DiffResult:
    """Compare two plan documents (either may be None: no stack file on that side)."""
    before, after = _indexed(old), _indexed(new)
    props: dict[Key, list[PropertyChange]] = {}
    for key in after:
        if key in before:
            props[key] = _changes(key[0], before[key], after[key])
    replaced = {key[1] for key, found in props.items() if any(p.replaces for p in found)}
    # A property that references a replaced resource's made-up value is unknown until that
    # resource exists again; where such a property forces replacement, the replacement spreads.
    grew = True
    while grew:
        grew = False
        for key, found in props.items():
            hit = _referenced(after[key]) & replaced
            if not hit:
                continue
            changed = {p.path for p in found}
            for path, value in leaves(after[key]):
                if path in changed or not isinstance(value, str):
                    continue
                if {m.group(1) for m in _REFERENCE.finditer(value)} & hit:
                    found.append(PropertyChange(path, shown(value), UNKNOWN, forces_replacement(key[0], path)))
                    if found[-1].replaces and key[1] not in replaced:
                        replaced.add(key[1])
                        grew = True
    changes: list[ResourceChange] = []
    unchanged = 0
    for key, inputs in after.items():
        if key not in before:
            created = [PropertyChange(p, None, shown(v)) for p, v in leaves(inputs) if p]
            changes.append(ResourceChange("create", *key, created))
        elif props[key]:
            props[key].sort(key=lambda p: _path_order(p.path))
            op: Op = "replace" if any(p.replaces for p in props[key]) else "update"
            changes.append(ResourceChange(op, *key, props[key]))
        else:
            unchanged += 1
    for key, inputs in before.items():
        if key not in after:
            deleted = [PropertyChange(p, shown(v), None) for p, v in leaves(inputs) if p]
            changes.append(ResourceChange("delete", *key, deleted))
    return DiffResult(stack=stack, base=base, changes=changes, unchanged=unchanged)
