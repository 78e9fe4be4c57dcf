"""The offline engine behind ``secure-export plan``: runs a Pulumi program under Pulumi's mocks.

``run_program`` takes any program callable (ours, or a plain Pulumi program a benchmark compares
it with), answers every resource registration and invoke with deterministic fake values, and
returns what the program declared: type, name, parent, inputs and made-up outputs per resource,
plus the stack outputs. Nothing here talks to a cloud or needs the Pulumi CLI.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.rpc import _special_secret_sig as _SECRET_SIG
from pulumi.runtime.rpc import _special_sig_key as _SIG_KEY
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

SECRET_MASK = "[secret]"

# Azure resource type and the input that holds the Azure name, per azure-native token.
_ARM_TYPES: dict[str, tuple[str, str | None]] = {
    "azure-native:resources:ResourceGroup": ("", "resourceGroupName"),
    "azure-native:monitor:ActionGroup": ("Microsoft.Insights/actionGroups", "actionGroupName"),
    "azure-native:monitor:MetricAlert": ("Microsoft.Insights/metricAlerts", "ruleName"),
    "azure-native:monitor:ScheduledQueryRule": ("Microsoft.Insights/scheduledQueryRules", "ruleName"),
    "azure-native:monitor:ActivityLogAlert": ("Microsoft.Insights/activityLogAlerts", "activityLogAlertName"),
    "azure-native:operationalinsights:Workspace": ("Microsoft.OperationalInsights/workspaces", "workspaceName"),
    "azure-native:app:ManagedEnvironment": ("Microsoft.App/managedEnvironments", "environmentName"),
    "azure-native:app:ContainerApp": ("Microsoft.App/containerApps", "containerAppName"),
    "azure-native:app:ManagedEnvironmentsStorage": ("Microsoft.App/managedEnvironments/storages", "storageName"),
    "azure-native:storage:StorageAccount": ("Microsoft.Storage/storageAccounts", "accountName"),
    "azure-native:storage:FileShare": ("Microsoft.Storage/storageAccounts/fileServices/shares", "shareName"),
    "azure-native:managedidentity:UserAssignedIdentity": (
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "resourceName",
    ),
    "azure-native:authorization:RoleAssignment": ("Microsoft.Authorization/roleAssignments", "roleAssignmentName"),
}


@dataclass
class PlannedResource:
    """One resource the program declared, as the offline engine saw it."""

    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    custom: bool
    secret_inputs: frozenset[str] = frozenset()
    parent_type: str | None = None
    depends_on: list[str] = field(default_factory=list)
    """Names of the resources it waits for, explicitly (``depends_on``) or through its inputs; sorted."""
    options: dict[str, bool] = field(default_factory=dict)
    """Resource options the policy rules read: ``retainOnDelete``, ``protect``."""

    @property
    def retain_on_delete(self) -> bool:
        """Whether ``pulumi destroy`` leaves it in the cloud (``retain_on_delete``)."""
        return self.options.get("retainOnDelete", False)


@dataclass
class PlanResult:
    """Everything a program declared: resources in tree order, and the stack outputs."""

    stack: str
    project: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    secret_outputs: frozenset[str] = frozenset()
    secret_values: frozenset[str] = field(default_factory=frozenset)
    engine_log: list[tuple[str, str]] = field(default_factory=list)
    """What the program logged through ``pulumi.log`` (level name, message), in order."""
    warnings: list[str] = field(default_factory=list)
    """The stack config's warnings (filled by ``secure_export.plan.run``), one line each naming its key."""


def _rewrite(value: Any, visit: Callable[[Any, Any], tuple[Any, bool] | None], key: Any = None) -> tuple[Any, bool]:
    """Rebuild ``value`` through dicts and lists; say whether ``visit`` replaced anything.

    ``visit(key, node)`` sees every node with the dict key it sits under (``None`` for list items
    and the root); it returns ``(replacement, hit)`` to replace the node, or ``None`` to descend.
    """
    replaced = visit(key, value)
    if replaced is not None:
        return replaced
    found = False
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out[k], hit = _rewrite(v, visit, k)
            found = found or hit
        return out, found
    if isinstance(value, list):
        items = []
        for v in value:
            item, hit = _rewrite(v, visit)
            items.append(item)
            found = found or hit
        return items, found
    return value, False


def _unwrap(value: Any) -> tuple[Any, bool]:
    """Strip Pulumi's secret envelopes from a deserialized value; say whether there was one."""
    return _rewrite(value, _open_envelope)


def _open_envelope(_key: Any, node: Any) -> tuple[Any, bool] | None:
    if isinstance(node, dict) and node.get(_SIG_KEY) == _SECRET_SIG:
        return _unwrap(node.get("value"))[0], True
    return None


class FakeCloud(pulumi.runtime.Mocks):
    """Pulumi mocks that make up deterministic ids: the same on every run, distinct across resources."""

    def __init__(self, stack: str, secret_values: Iterable[str] = ()) -> None:
        self.stack = stack
        self.subscription_id = self._uuid("subscription")
        self.tenant_id = self._uuid("tenant")
        self.deployer_object_id = self._uuid("deployer")
        self.records: dict[tuple[str, str], PlannedResource] = {}
        self.parents: dict[tuple[str, str], str] = {}
        self.options: dict[tuple[str, str], tuple[list[str], dict[str, bool]]] = {}
        """Per resource: the URNs it depends on, and the options the policy rules read."""
        self.secret_values: set[str] = {v for v in secret_values if v}
        self._lock = threading.Lock()

    def _uuid(self, *parts: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "secure-export-plan/" + self.stack + "/" + "/".join(parts)))

    def _key(self, *parts: str) -> str:
        digest = hashlib.sha256(("secure-export-plan-key/" + self.stack + "/" + "/".join(parts)).encode()).digest()
        value = base64.b64encode(digest * 2).decode()
        with self._lock:
            self.secret_values.add(value)
        return value

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        """Answer a resource registration with its inputs plus made-up provider outputs."""
        secret_inputs = set()
        inputs: dict[str, Any] = {}
        for key, raw in (args.inputs or {}).items():
            inputs[key], is_secret = _unwrap(raw)
            if is_secret:
                secret_inputs.add(key)
        fake = self._fake_outputs(args.typ, args.name, inputs) if args.custom else {}
        record = PlannedResource(
            type=args.typ,
            name=args.name,
            parent=None,
            inputs=inputs,
            outputs=fake,
            custom=bool(args.custom),
            secret_inputs=frozenset(secret_inputs),
        )
        with self._lock:
            self.records[(args.typ, args.name)] = record
        resource_id = fake.get("id") if args.custom else None
        state = {**inputs, **fake}
        identity = state.get("identity")
        if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
            # Azure answers user-assigned identities as a map keyed by id where the input is a list.
            state["identity"] = {
                **identity,
                "userAssignedIdentities": {i: {} for i in identity["userAssignedIdentities"] if isinstance(i, str)},
            }
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Answer an invoke (data source) deterministically (no check failures)."""
        return self._answer(args), []

    def _answer(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        token = args.token
        if token in ("azuread:index/getClientConfig:getClientConfig", "azure-native:authorization:getClientConfig"):
            return {
                "clientId": self._uuid("deployer-client"),
                "objectId": self.deployer_object_id,
                "tenantId": self.tenant_id,
                "subscriptionId": self.subscription_id,
            }
        if token == "azuread:index/getServicePrincipal:getServicePrincipal":
            client_id = (args.args or {}).get("clientId") or self._uuid("sp-client", str(args.args))
            return {"clientId": client_id, "objectId": self._uuid("sp", client_id), "appRoleIds": {}}
        if token == "azure-native:operationalinsights:getSharedKeys":
            seed = str(sorted((args.args or {}).items()))
            return {"primarySharedKey": self._key("la1", seed), "secondarySharedKey": self._key("la2", seed)}
        if token == "azure-native:storage:listStorageAccountKeys":
            seed = str(sorted((args.args or {}).items()))
            return {
                "keys": [
                    {"keyName": "key1", "permissions": "FULL", "value": self._key("sa1", seed)},
                    {"keyName": "key2", "permissions": "FULL", "value": self._key("sa2", seed)},
                ]
            }
        return {}

    def _fake_outputs(self, typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        if typ.startswith("azuread:"):
            return self._fake_azuread(typ, name, inputs)
        if typ.startswith("azure-native:"):
            return self._fake_azure(typ, name, inputs)
        return {"id": self._uuid("id", typ, name)}

    def _fake_azuread(self, typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        object_id = self._uuid("object", typ, name)
        if typ == "azuread:index/application:Application":
            roles = {r.get("value"): r.get("id") for r in inputs.get("appRoles") or [] if r.get("value")}
            return {
                "id": f"/applications/{object_id}",
                "objectId": object_id,
                "clientId": self._uuid("client", typ, name),
                "appRoleIds": roles,
            }
        if typ == "azuread:index/servicePrincipal:ServicePrincipal":
            return {"id": object_id, "objectId": object_id}
        return {"id": object_id}

    def _fake_azure(self, typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        arm_type, name_key = _ARM_TYPES.get(typ, ("", None))
        azure_name = inputs.get(name_key) if name_key else None
        if not isinstance(azure_name, str) or not azure_name:
            azure_name = f"{name}{hashlib.sha256((self.stack + typ + name).encode()).hexdigest()[:8]}"
        sub = f"/subscriptions/{self.subscription_id}"
        rg = inputs.get("resourceGroupName") or "unknown"
        if typ == "azure-native:resources:ResourceGroup":
            resource_id = f"{sub}/resourceGroups/{azure_name}"
        elif typ == "azure-native:authorization:RoleAssignment":
            resource_id = f"{inputs.get('scope') or sub}/providers/{arm_type}/{azure_name}"
        elif typ == "azure-native:app:ManagedEnvironmentsStorage":
            environment = inputs.get("environmentName")
            resource_id = (
                f"{sub}/resourceGroups/{rg}/providers/Microsoft.App/managedEnvironments/{environment}"
                f"/storages/{azure_name}"
            )
        elif typ == "azure-native:storage:FileShare":
            account = inputs.get("accountName")
            resource_id = (
                f"{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{account}"
                f"/fileServices/default/shares/{azure_name}"
            )
        else:
            if not arm_type:
                module, resource = typ.split(":")[1:3]
                arm_type = f"Microsoft.{module.capitalize()}/{resource[0].lower()}{resource[1:]}s"
            resource_id = f"{sub}/resourceGroups/{rg}/providers/{arm_type}/{azure_name}"
        out: dict[str, Any] = {"id": resource_id, "name": azure_name}
        if typ == "azure-native:operationalinsights:Workspace":
            out["customerId"] = self._uuid("workspace-customer", name)
        elif typ == "azure-native:app:ManagedEnvironment":
            region = str(inputs.get("location") or "region").replace(" ", "").lower()
            out["defaultDomain"] = (
                f"{hashlib.sha256((self.stack + name).encode()).hexdigest()[:12]}.{region}.azurecontainerapps.io"
            )
        elif typ == "azure-native:managedidentity:UserAssignedIdentity":
            out["principalId"] = self._uuid("principal", name)
            out["clientId"] = self._uuid("msi-client", name)
        return out


class _PlanMonitor(pulumi_mocks.MockMonitor):
    """Pulumi's mock monitor, also noting each resource's parent (MockResourceArgs has none).

    The SDK calls the monitor on executor threads and gives each thread an event loop that nobody
    closes. Collected later, at any moment, such a loop's ``__del__`` can run inside an unrelated
    ``ast.parse`` (a traceback being formatted) and break it with CPython 3.11's "AST constructor
    recursion depth mismatch", or print "Exception ignored in BaseEventLoop.__del__" at exit. So
    each thread gets its loop from here, and :meth:`close_loops` closes them when the run ends.
    """

    def __init__(self, mocks: FakeCloud) -> None:
        super().__init__(mocks)
        self._fake = mocks
        self._loops: set[asyncio.AbstractEventLoop] = set()
        self._loops_lock = threading.Lock()

    def _thread_loop(self) -> None:
        if threading.current_thread() is threading.main_thread():
            return  # the main thread's loop runs the program; it outlives a run
        try:
            loop = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:
            loop = None
        if loop is None or loop.is_closed():  # closed: left by an earlier run on this thread
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
        with self._loops_lock:
            self._loops.add(loop)

    def close_loops(self) -> None:
        """Close the executor threads' loops (idle once the run is over)."""
        with self._loops_lock:
            loops, self._loops = self._loops, set()
        for loop in loops:
            if not loop.is_running():
                loop.close()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        if request.type != "pulumi:pulumi:Stack" and request.parent:
            self._fake.parents[(request.type, request.name)] = request.parent
        # The SDK sends explicit depends_on and every input's dependencies together, as URNs.
        self._fake.options[(request.type, request.name)] = (
            list(request.dependencies),
            {"retainOnDelete": bool(request.retainOnDelete), "protect": bool(request.protect)},
        )
        self._thread_loop()
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]  # pulumi's MockMonitor is unannotated

    def Invoke(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        self._thread_loop()
        return super().Invoke(request)  # type: ignore[no-untyped-call]  # pulumi's MockMonitor is unannotated

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        self._thread_loop()
        return super().ReadResource(request)  # type: ignore[no-untyped-call]  # pulumi's MockMonitor is unannotated


def _parent_name(urn: str) -> tuple[str, str] | None:
    # urn:pulumi:<stack>::<project>::<parent types$...$type>::<name>
    parts = urn.split("::")
    if len(parts) < 4:
        return None
    typ = parts[2].split("$")[-1]
    if typ == "pulumi:pulumi:Stack":
        return None
    return typ, parts[-1]


def _tree_order(records: dict[tuple[str, str], PlannedResource]) -> list[PlannedResource]:
    children: dict[tuple[str, str] | None, list[PlannedResource]] = {}
    for record in records.values():
        parent_key = (record.parent_type, record.parent) if record.parent is not None else None
        if parent_key not in records:
            parent_key = None
        children.setdefault(parent_key, []).append(record)
    ordered: list[PlannedResource] = []
    stack: list[PlannedResource] = sorted(children.get(None, []), key=lambda r: (r.name, r.type), reverse=True)
    while stack:
        record = stack.pop()
        ordered.append(record)
        kids = children.get((record.type, record.name), [])
        stack.extend(sorted(kids, key=lambda r: (r.name, r.type), reverse=True))
    return ordered


# Old-generation threshold no run reaches: a full pass every 10**9 young-generation passes.
_NO_FULL_COLLECTIONS = 1_000_000_000


def _no_stack_trace() -> Any:
    return source_pb2.StackTrace()


@contextmanager
def no_full_collections() -> Iterator[None]:
    """Run the block with young-generation garbage collection only; the old generation waits.

    Planning builds a large heap that stays alive to the end — the parsed stack file, then every
    declared resource's outputs, futures and tasks, which the SDK holds until the loop resolves
    them — and each full collection rescanned all of it, again and again as it grew: over half of
    planning 1,000 or 5,000 rules, and half of reading a 5,000-rule stack file (docs/benchmarks.md).
    Young passes go on and free the SDK's short-lived cycles (~700 objects per resource), so peak
    memory does not grow; what reaches the old generation meanwhile waits for the first full
    pass after the block, or the interpreter's exit.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], _NO_FULL_COLLECTIONS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


@contextmanager
def _offline_runtime() -> Iterator[None]:
    """Leave out two costs of the SDK that buy nothing under mocks, for the length of one run.

    Every resource registration walks the Python stack into a protobuf stack trace (a file URI per
    frame) for the engine's error messages; the mock monitor never reads it, and deeper call stacks
    (components, runpy) paid more per resource. And full garbage collections wait (see
    :func:`no_full_collections`).
    """
    # A private SDK function: a Pulumi release without it only loses the saving, never the plan.
    saved = getattr(pulumi_resource, "_get_stack_trace", None)
    if saved is not None:
        pulumi_resource._get_stack_trace = _no_stack_trace
    try:
        with no_full_collections():
            yield
    finally:
        if saved is not None:
            pulumi_resource._get_stack_trace = saved


def _main_thread_loop() -> None:
    """Give the calling thread an open event loop: the SDK runs the program on the current one.

    ``asyncio.run`` (in the same process, before this run) leaves the thread with none, and the
    SDK's ``get_event_loop()`` then raises "There is no current event loop".
    """
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def run_program(
    program: Callable[[], Any],
    *,
    stack: str,
    project: str = "secure-export",
    config: dict[str, str] | None = None,
    secret_keys: Iterable[str] = (),
    secret_values: Iterable[str] = (),
) -> PlanResult:
    """Run ``program`` under Pulumi mocks, offline, and return what it declared.

    ``config`` is the flat Pulumi config (``"project:key" -> string``, structured values as JSON)
    the program reads through ``pulumi.Config``; ``secret_keys`` names the secret ones and
    ``secret_values`` are plaintexts a renderer must mask. Each call starts a fresh engine.
    """
    _main_thread_loop()
    fake = FakeCloud(stack, secret_values)
    monitor = _PlanMonitor(fake)
    engine_log = _EngineLog()
    pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]  # None resets it; the SDK annotates Resource only
    pulumi.runtime.set_mocks(
        fake, project=project, stack=stack, preview=False, monitor=monitor, logger=engine_log.logger
    )
    # Mock settings keep the previous run's pending outputs; a failed run must not leak into this one.
    pulumi_settings.SETTINGS.outputs.clear()
    pulumi_settings.SETTINGS.rpc_manager.clear()
    set_all_config(dict(config or {}), list(secret_keys))
    try:
        with _offline_runtime():
            _sync_await(run_pulumi_func(program))
            root = pulumi_settings.get_root_resource()
            exported: dict[str, Any] = dict(getattr(root, "outputs", {}) or {})
            values, secret_outputs = _sync_await(_resolve_outputs(exported))
    except BaseException:
        _mark_failed_futures_seen()
        raise
    finally:
        set_all_config({}, [])
        monitor.close_loops()

    for key, record in fake.records.items():
        parent_urn = fake.parents.get(key)
        parent = _parent_name(parent_urn) if parent_urn else None
        record.parent_type, record.parent = parent if parent else (None, None)
        urns, record.options = fake.options.get(key, ([], {}))
        record.depends_on = sorted({urn.split("::")[-1] for urn in urns} - {record.name})
    return PlanResult(
        stack=stack,
        project=project,
        resources=_tree_order(fake.records),
        outputs=values,
        secret_outputs=frozenset(secret_outputs),
        secret_values=frozenset(fake.secret_values),
        engine_log=engine_log.records,
    )


class _EngineLog(logging.Handler):
    """Collects what the program logs through ``pulumi.log``; the mock engine would print it to the root logger."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, str]] = []
        self.logger = logging.Logger("secure-export.offline.engine")  # not registered: one per run
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelname, record.getMessage()))


def _mark_failed_futures_seen() -> None:
    """After a failed run: mark the SDK's futures that hold the error as retrieved.

    The SDK sets the error on the outputs of every resource the failure touched, and nothing will
    await them; the error itself reaches the caller through ``run_program``. Left alone, each such
    future logs "Future exception was never retrieved" from its destructor whenever the garbage
    collector gets to it, and on CPython 3.11.7 a destructor that formats a traceback in the
    middle of another ``ast.parse`` breaks that parse ("AST constructor recursion depth mismatch").
    """
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.Future) and obj.done() and not obj.cancelled():
            obj.exception()


async def _resolve_outputs(exported: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    values: dict[str, Any] = {}
    secret: set[str] = set()
    for name, value in exported.items():
        output = pulumi.Output.from_input(value)
        values[name] = await output.future()
        if await output.is_secret():
            secret.add(name)
    return values, secret


def masked(value: Any, secrets: frozenset[str] | set[str]) -> tuple[Any, bool]:
    """Replace every string in ``secrets`` found in ``value`` by the mask; say whether any was."""

    def visit(_key: Any, node: Any) -> tuple[Any, bool] | None:
        if isinstance(node, str):
            return (SECRET_MASK, True) if node in secrets else (node, False)
        return None

    return _rewrite(value, visit)


def _mask_secret_lists(value: Any) -> tuple[Any, bool]:
    return _rewrite(value, _mask_secret_list)


def _mask_secret_list(key: Any, node: Any) -> tuple[Any, bool] | None:
    # Entries of a list named "secrets" (container-app secrets) are secret by definition.
    if key == "secrets" and isinstance(node, list):
        return [{**e, "value": SECRET_MASK} if isinstance(e, dict) and "value" in e else e for e in node], bool(node)
    return None


def plain_numbers(value: Any) -> Any:
    """Return ``value`` with integral floats as ints and map keys sorted.

    The engine hands every number over as a double and maps in no fixed order; this makes the
    plan byte-for-byte the same on every run.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain_numbers(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [plain_numbers(v) for v in value]
    return value


def public_inputs(record: PlannedResource, secrets: frozenset[str] | set[str]) -> dict[str, Any]:
    """Return a resource's inputs with secrets masked.

    A property Pulumi marked secret keeps its shape when the secret leaves inside it are known
    (config secrets, key material the engine handed out, container-app secret values);
    otherwise it is masked whole.
    """
    out: dict[str, Any] = {}
    for key, value in record.inputs.items():
        shown, hit = masked(value, secrets)
        shown, listed = _mask_secret_lists(shown)
        if key in record.secret_inputs and not (hit or listed):
            shown = SECRET_MASK
        out[key] = plain_numbers(shown)
    return {k: out[k] for k in sorted(out)}
