"""The kopf handlers: adapters from watch events to the scheduling loop. They decide nothing.

Indexes keep complete caches of nodes, managed pods, pools, workloads and PriorityClasses.
The loop runs inside a daemon of an AcceleratorPool, for two kopf guarantees: resource
handlers start only after every index is complete (so the ledger is rebuilt from all pod
annotations before the first placement), and daemons stop while peering pauses the operator
(so only one scheduler acts). One lock makes the pools' daemons take turns: the first one
runs the loop, the others wait to take over if its pool goes away.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import kopf
import kubernetes.client

from archipelago import api, config, scheduler
from archipelago.actuation import Actuator
from archipelago.api import common, labels, reasons, resources

registry = kopf.OperatorRegistry()

_TRAINING = (api.GROUP, api.VERSION, resources.TRAINING_JOB.plural)
_INFERENCE = (api.GROUP, api.VERSION, resources.INFERENCE_SERVICE.plural)
_POOLS = (api.GROUP, api.VERSION, resources.ACCELERATOR_POOL.plural)
_PRIORITY_CLASSES = ("scheduling.k8s.io", "v1", "priorityclasses")
_MANAGED = {labels.MANAGED_BY: labels.MANAGER}


@dataclasses.dataclass
class Runtime:
    """What the handlers share, carried in kopf's memo: settings, the API client, the loop."""

    settings: config.Operator
    client: kubernetes.client.ApiClient
    scheduler: scheduler.Scheduler | None = None
    lock: asyncio.Lock | None = None


_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """Our own copy of an object for an index (kopf replaces its bodies and never mutates ours),
    without what no cycle reads yet costs the most memory and copying: ``metadata.managedFields``
    (the field owners of server-side apply, often larger than the object) and kubectl's
    last-applied-configuration annotation (a second copy of the spec)."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if annotations and _LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != _LAST_APPLIED}
    return copy.deepcopy({**body, "metadata": meta})


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Credentials as kubectl finds them: the in-cluster ServiceAccount, else the kubeconfig.

    A registry of our own has none of kopf's fallback logins: without this handler the operator
    starts, finds no credentials and never watches anything (found on the real API server). None
    where neither exists, so that another login handler (the emulator tests') may answer.
    """
    try:
        return kopf.login_via_client(**kwargs)
    except kopf.LoginError:
        return None


@kopf.index("nodes", registry=registry)
def nodes_index(name: str, body: kopf.Body, **_: Any) -> dict:
    return {name: _plain(body)}


@kopf.index("pods", labels=_MANAGED, registry=registry)
def pods_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, name): _plain(body)}


@kopf.index(*_POOLS, registry=registry)
def pools_index(name: str, body: kopf.Body, **_: Any) -> dict:
    return {name: _plain(body)}


@kopf.index(*_TRAINING, registry=registry)
def jobs_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, name): _plain(body)}


@kopf.index(*_INFERENCE, registry=registry)
def services_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, name): _plain(body)}


@kopf.index(*_PRIORITY_CLASSES, registry=registry)
def priorities_index(name: str, body: kopf.Body, **_: Any) -> dict:
    return {name: _plain(body)}


def _values(index: kopf.Index) -> list[dict[str, Any]]:
    return [value for store in index.values() for value in store]


class _NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """A diff-base storage that stores nothing. kopf keeps the last handled spec of each object for
    on.create, on.update and on.resume handlers; we have none, yet it would patch that annotation
    onto every new or changed workload: half the operator's PATCHes of 8,607 TrainingJobs, answered
    at 0.3-0.6 s each and then throttled (HTTP 429) at 5,000 nodes (bench/controlplane.py). An
    annotation stored by an older version is still read, and never rewritten."""

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


@kopf.on.startup(registry=registry)
async def start(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    nodes_index: kopf.Index,
    pods_index: kopf.Index,
    pools_index: kopf.Index,
    jobs_index: kopf.Index,
    services_index: kopf.Index,
    priorities_index: kopf.Index,
    **_: Any,
) -> None:
    """Keep kopf's own bookkeeping in annotations (our status schema has no room for it), build the loop."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = _NoDiffBase(prefix=api.GROUP)
    settings.posting.level = 40  # only errors become kopf's own Events; ours are explicit
    # Server-side: the handlers' labels= filter is applied by kopf after the API server has sent
    # every pod of the cluster; this selector makes the server send only ours.
    settings.watching.label_selectors["pods"] = f"{labels.MANAGED_BY}={labels.MANAGER}"

    def read() -> scheduler.Inputs:
        return scheduler.Inputs(
            nodes=_values(nodes_index),
            pools=_values(pools_index),
            pods=_values(pods_index),
            jobs=_values(jobs_index),
            services=_values(services_index),
            priority_classes=_values(priorities_index),
        )

    runtime: Runtime = memo.runtime
    runtime.lock = asyncio.Lock()
    runtime.scheduler = scheduler.Scheduler(
        read, Actuator(runtime.client, runtime.settings.actuation), runtime.settings
    )


@kopf.daemon(*_POOLS, registry=registry, cancellation_timeout=5.0)
async def schedule(memo: kopf.Memo, **_: Any) -> None:
    """Run the scheduling loop while this pool exists and the operator is active."""
    runtime: Runtime = memo.runtime
    assert runtime.lock is not None and runtime.scheduler is not None
    async with runtime.lock:
        ready = asyncio.Event()
        ready.set()
        await runtime.scheduler.run(ready)


def _wake(memo: kopf.Memo) -> None:
    runtime: Runtime = memo.runtime
    if runtime.scheduler is not None:
        runtime.scheduler.wake()


@kopf.on.event("pods", labels=_MANAGED, registry=registry)
def pod_seen(namespace: str, name: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
    """A pod event confirms the scheduler's assumption of a pod it created; ask for a cycle."""
    runtime: Runtime = memo.runtime
    if runtime.scheduler is not None:
        runtime.scheduler.observed(namespace, name, uid)


@kopf.on.event("nodes", registry=registry)
@kopf.on.event(*_POOLS, registry=registry)
@kopf.on.event(*_PRIORITY_CLASSES, registry=registry)
def wake(memo: kopf.Memo, **_: Any) -> None:
    """Any change may let a gang fit or need a verdict: ask for a cycle."""
    _wake(memo)


@kopf.on.event(*_TRAINING, registry=registry)
@kopf.on.event(*_INFERENCE, registry=registry)
async def wake_or_explain(
    type: str | None, body: kopf.Body, memo: kopf.Memo, pools_index: kopf.Index, **_: Any
) -> None:
    """Ask for a cycle; without any AcceleratorPool no cycle runs, so say so on the workload."""
    _wake(memo)
    runtime: Runtime = memo.runtime
    if (
        pools_index
        or type == "DELETED"
        or runtime.scheduler is None
        or body.get("metadata", {}).get("deletionTimestamp")
    ):
        return
    kind = resources.TRAINING_JOB if body.get("kind") == resources.TRAINING_JOB.kind else resources.INFERENCE_SERVICE
    message = "no AcceleratorPool exists: create one for the nodes to schedule on (see crds/examples)"
    await runtime.scheduler.hold(kind, body, common.Phase.PENDING, reasons.Reason.NO_ACCELERATOR_POOL, message)


@kopf.on.delete(*_TRAINING, registry=registry)
@kopf.on.delete(*_INFERENCE, registry=registry)
async def remove_pods(namespace: str, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Delete a removed workload's pods (owner references do it too where a garbage collector runs).

    The pods come from the API server, not the pods index: a pod created just before the
    deletion may not have reached the index yet. Whenever live pods were found, the handler
    looks once more a second later (``TemporaryError``), for a pod a cycle already under way
    created after the first look; the workload goes only when a look finds none.
    """
    runtime: Runtime = memo.runtime
    if runtime.scheduler is None:
        return
    selector = f"{labels.JOB_NAME}={name},{labels.JOB_KIND}={body.get('kind', '')}"
    try:
        mine = await runtime.scheduler.actuator.live_pods(namespace, selector)
    except Exception as e:  # noqa: BLE001 - any failure to list: look again later, keep the finalizer
        raise kopf.TemporaryError(f"pods of {namespace}/{name} could not be listed: {e}", delay=5) from e
    if mine:
        grace = ((body.get("spec") or {}).get("checkpoint") or {}).get("gracePeriodSeconds")
        failed = await runtime.scheduler.actuator.delete_pods(namespace, mine, grace)
        _wake(memo)
        raise kopf.TemporaryError(
            f"{len(mine) - failed} pods of {namespace}/{name} deleted, {failed} not yet; looking again", delay=1
        )
    _wake(memo)
