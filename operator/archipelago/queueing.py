"""From TrainingJob and InferenceService objects to the gangs the scheduling cycle places.

Pure: reads plain dicts (kopf bodies or API JSON) and returns core values. Names: a
TrainingJob ``ns/job`` is one gang ``ns/job`` whose pods are ``ns/job-<role>-<index>``; an
InferenceService ``ns/svc`` is one single-pod gang per replica, ``ns/svc/<i>``, whose pod is
``ns/svc-server-<i>``. The ledger keys pods by ``<namespace>/<pod name>``.

A spec the operator cannot act on raises ``SpecError`` naming the field and the fix. Errors
the user must fix in the spec are permanent (the workload fails); references to things that
may appear later (a PriorityClass, a pool, a device model) keep it pending.
"""

from __future__ import annotations

import dataclasses
import datetime
import types
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from archipelago import workload
from archipelago.api import common, resources
from archipelago.api import reasons as reasons_
from archipelago.cluster import devices, nodes, topology
from archipelago.inventory import quantities

INFERENCE_ROLE = "server"
"""The role (pod set) of an InferenceService's serving pods."""


class SpecError(ValueError):
    """A workload spec the scheduler cannot act on.

    ``field`` is the JSON path (``spec.replicaSets[0].cards.milli``), ``reason`` the condition
    reason, and ``permanent`` whether only a spec change can cure it.
    """

    def __init__(self, field: str, message: str, reason: reasons_.Reason, *, permanent: bool) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = reason
        self.permanent = permanent


@dataclasses.dataclass(frozen=True)
class Workload:
    """A TrainingJob or an InferenceService as the scheduler reads it."""

    kind: resources.Kind
    namespace: str
    name: str
    uid: str
    generation: int
    created: float
    """Creation time, seconds since the epoch."""
    spec: Any
    status: common.WorkloadStatus
    annotations: Mapping[str, str]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def training(self) -> bool:
        return self.kind is resources.TRAINING_JOB


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """What a spec may refer to: PriorityClasses, pools, the card models they hold, topology levels."""

    priorities: Mapping[str, int] = dataclasses.field(default_factory=dict)
    default_priority: int = 0
    """The value of the ``globalDefault`` PriorityClass, or 0."""
    pools: Mapping[str, resources.AcceleratorPoolSpec] = dataclasses.field(default_factory=dict)
    models: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    """Pool name to the card models of its ready nodes."""
    levels: tuple[str, ...] = topology.DEFAULT_LEVELS


def timestamp(value: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (``2026-11-21T10:00:00Z``), or None."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def read(kind: resources.Kind, body: Mapping[str, Any]) -> Workload:
    """The workload in ``body``; raises a permanent ``SpecError`` if its spec does not parse or its
    name is longer than the names and labels of its pods allow.

    A status the operator cannot read (hand-edited) is replaced by an empty one, never raised.
    """
    meta = body.get("metadata") or {}
    limit = kind.name_limit
    if limit is not None and len(meta["name"]) > limit.length:  # made before the CRD's rule said so
        raise SpecError("metadata.name", limit.problem, reasons_.Reason.INVALID_SPEC, permanent=True)
    try:
        spec = kind.spec.model_validate(body.get("spec") or {})
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        raise SpecError(
            _path("spec", first["loc"]), _sentence(first["msg"]), reasons_.Reason.INVALID_SPEC, permanent=True
        ) from None
    try:
        status = kind.status.model_validate(body.get("status") or {}, strict=False)
    except pydantic.ValidationError:
        status = kind.status()
    return Workload(
        kind=kind,
        namespace=meta.get("namespace") or "default",
        name=meta["name"],
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation") or 1),
        created=timestamp(meta.get("creationTimestamp")) or 0.0,
        spec=spec,
        status=status,
        annotations=types.MappingProxyType(dict(meta.get("annotations") or {})),
    )


def training_gang(job: Workload, catalogue: Catalogue, *, queued_at: float) -> workload.Gang:
    """The gang of a TrainingJob; raises ``SpecError``.

    Its pods avoid ``status.avoidNodes``: after a restart, the node of the failed pod or the
    lost node.
    """
    spec: resources.TrainingJobSpec = job.spec
    common_ = _common(spec, catalogue)
    pod_sets = []
    status: common.TrainingJobStatus = job.status  # type: ignore[assignment]  # read() parses a TrainingJob's
    avoid = frozenset(status.avoid_nodes)  # where the last restart's pods failed or were lost
    for k, rs in enumerate(spec.replica_sets):
        request = _request(rs.template, rs.cards, f"spec.replicaSets[{k}]", spec, catalogue, common_)
        if avoid:
            request = dataclasses.replace(request, avoid_nodes=avoid)
        pod_sets.append(workload.PodSet(rs.name, rs.replicas, request, min_count=rs.min_replicas))
    try:
        return workload.Gang(
            job.key,
            tuple(pod_sets),
            min_member=spec.min_member,
            priority=common_.priority,
            preemptible=spec.preemptible,
            topology=common_.topology,
            queued_at=queued_at,
        )
    except ValueError as e:
        raise SpecError("spec.minMember", str(e), reasons_.Reason.INVALID_SPEC, permanent=True) from None


def inference_gangs(
    svc: Workload, catalogue: Catalogue, indices: Iterable[int], *, queued_at: float
) -> list[workload.Gang]:
    """One single-pod gang per replica index in ``indices``; raises ``SpecError``."""
    spec: resources.InferenceServiceSpec = svc.spec
    common_ = _common(spec, catalogue)
    request = _request(spec.template, spec.cards, "spec", spec, catalogue, common_)
    return [
        workload.Gang(
            f"{svc.key}/{i}",
            (workload.PodSet(INFERENCE_ROLE, 1, request, first_index=i),),
            priority=common_.priority,
            preemptible=spec.preemptible,
            topology=common_.topology,
            queued_at=queued_at,
            pod_prefix=svc.key,
        )
        for i in indices
    ]


def pod_key(namespace: str, name: str) -> str:
    """The ledger's name for a pod."""
    return f"{namespace}/{name}"


@dataclasses.dataclass(frozen=True)
class _Common:
    priority: int
    topology: workload.TopologyRequest | None
    node_selector: Mapping[str, str]
    resource: str | None


def _common(spec: Any, catalogue: Catalogue) -> _Common:
    """Priority, topology and pool of a spec, checked against what exists."""
    if spec.priority_class_name is None:
        priority = catalogue.default_priority
    elif spec.priority_class_name in catalogue.priorities:
        priority = catalogue.priorities[spec.priority_class_name]
    else:
        known = ", ".join(sorted(catalogue.priorities)) or "none"
        raise SpecError(
            "spec.priorityClassName",
            f"PriorityClass {spec.priority_class_name!r} does not exist (known: {known}); create it or fix the name",
            reasons_.Reason.UNKNOWN_PRIORITY_CLASS,
            permanent=False,
        )
    pools = catalogue.pools
    if spec.pool is not None and spec.pool not in pools:
        known = ", ".join(sorted(pools)) or "none"
        raise SpecError(
            "spec.pool",
            f"AcceleratorPool {spec.pool!r} does not exist (known: {known})",
            reasons_.Reason.UNKNOWN_POOL,
            permanent=False,
        )
    candidates = [spec.pool] if spec.pool is not None else sorted(pools)
    present = set().union(*(catalogue.models.get(p, frozenset()) for p in candidates))
    for k, model in enumerate(spec.device_models):
        # A model the catalogue knows but no pool holds may still arrive with new nodes; the
        # scheduler then says NoMatchingNodes. A model nobody knows is a typo.
        if model not in present and model not in devices.CATALOGUE:
            where = f"pool {spec.pool}" if spec.pool is not None else "any AcceleratorPool"
            known = ", ".join(sorted(present)) or "none"
            raise SpecError(
                f"spec.deviceModels[{k}]",
                f"{model!r} is not a known card model and no node of {where} has it (models present: {known})",
                reasons_.Reason.UNKNOWN_DEVICE_MODEL,
                permanent=False,
            )
    request = None
    if spec.topology is not None:
        valid = (*catalogue.levels, topology.HOSTNAME, workload.LINK_GROUP)
        if spec.topology.level not in valid:
            raise SpecError(
                "spec.topology.level",
                f"{spec.topology.level!r} is not a topology level; use one of {', '.join(valid)}",
                reasons_.Reason.UNKNOWN_TOPOLOGY_LEVEL,
                permanent=False,
            )
        request = workload.TopologyRequest(spec.topology.level, workload.TopologyMode(spec.topology.mode.lower()))
    pool = pools.get(spec.pool) if spec.pool is not None else None
    return _Common(
        priority=priority,
        topology=request,
        node_selector=dict(pool.node_selector) if pool else {},
        resource=pool.resource_name if pool else None,
    )


def _request(
    template: Mapping[str, Any],
    cards: common.CardRequest,
    field: str,
    spec: Any,
    catalogue: Catalogue,
    common_: _Common,
) -> workload.PodRequest:
    """The per-pod request of a pod template and a card request."""
    pod_spec = template.get("spec") or {}
    if cards.milli < devices.MILLI_PER_CARD:
        sharing = [
            name
            for name, pool in catalogue.pools.items()
            if pool.fractional and (spec.pool is None or name == spec.pool)
        ]
        if not sharing:
            raise SpecError(
                f"{field}.cards.milli",
                f"{cards.milli} milli-cards is a fraction, but no AcceleratorPool allows sharing "
                "(set fractional: true on a pool, or ask for whole cards)",
                reasons_.Reason.FRACTIONAL_NOT_ALLOWED,
                permanent=False,
            )
    cpu, memory = _pod_requests(pod_spec, f"{field}.template.spec")
    selector = {**dict(pod_spec.get("nodeSelector") or {}), **common_.node_selector}
    try:
        tolerations = tuple(
            nodes.Toleration(
                key=t.get("key", ""),
                operator=t.get("operator", "Equal"),
                value=t.get("value", ""),
                effect=t.get("effect", ""),
            )
            for t in pod_spec.get("tolerations") or ()
        )
        return workload.PodRequest(
            name="",
            cpu_milli=cpu,
            memory_mib=memory,
            cards=cards.count,
            milli_per_card=cards.milli if cards.count else 0,
            device_memory_mib=cards.memory_mib if cards.count else 0,
            models=frozenset(spec.device_models),
            resource=common_.resource,
            node_selector=selector,
            tolerations=tolerations,
        )
    except ValueError as e:
        raise SpecError(f"{field}.template.spec", str(e), reasons_.Reason.INVALID_SPEC, permanent=True) from None


def _pod_requests(pod_spec: Mapping[str, Any], field: str) -> tuple[int, int]:
    """Cpu (milli-cores) and memory (MiB) a pod requests: containers summed, init containers' max.

    This is the pod's effective request as Kubernetes computes it ("Resource sharing within
    containers", Kubernetes docs: init containers run one at a time, before the others).
    """
    totals = []
    for group in ("containers", "initContainers"):
        cpu = memory = 0
        peak_cpu = peak_memory = 0
        for k, container in enumerate(pod_spec.get(group) or ()):
            requests = (container.get("resources") or {}).get("requests") or {}
            where = f"{field}.{group}[{k}].resources.requests"
            try:
                c = quantities.cpu_milli(requests.get("cpu", "0"), up=True)
                m = quantities.mebibytes(requests.get("memory", "0"), up=True)
            except ValueError as e:
                raise SpecError(where, str(e), reasons_.Reason.INVALID_SPEC, permanent=True) from None
            cpu, memory = cpu + c, memory + m
            peak_cpu, peak_memory = max(peak_cpu, c), max(peak_memory, m)
        totals.append((cpu, memory) if group == "containers" else (peak_cpu, peak_memory))
    (cpu, memory), (init_cpu, init_memory) = totals
    return max(cpu, init_cpu), max(memory, init_memory)


def _path(root: str, loc: tuple) -> str:
    """A pydantic error location as a JSON path: ``spec.replicaSets[0].cards.milli``."""
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _sentence(message: str) -> str:
    return message.removeprefix("Value error, ")
