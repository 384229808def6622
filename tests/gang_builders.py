"""Keyword builders for gangs, running gangs, snapshots and plans, so gang tests read as sentences.

Defaults follow ``tests.builders``: a pod asks for 1 core and 1 GiB besides its cards. Node
arguments are node names (``"n0"``), as the cluster builders name them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence

from archipelago import workload
from archipelago.cluster import ledger as ledger_
from archipelago.cluster import topology
from archipelago.placement import fit, plan
from archipelago.policies import scoring
from tests.builders import POD_CPU_MILLI, POD_MEMORY_MIB, make_pod

LEVELS = {
    "spine": topology.SPINE,
    "island": topology.ISLAND,
    "host": topology.HOSTNAME,
    "hostname": topology.HOSTNAME,
    "link-group": workload.LINK_GROUP,
}
"""Short names of topology levels, as ``make_topology`` reads them."""

Where = str | tuple[str, Sequence[int]]
"""Where one pod goes: a node name (the ledger's ``fit.choose`` picks the cards) or a node
name with the card indices."""


def make_topology(spec: str | workload.TopologyRequest | None) -> workload.TopologyRequest | None:
    """``"island-required"``, ``"host-preferred"``, ``"link-group-required"``... as a request.

    A ``TopologyRequest`` or None passes through unchanged.
    """
    if spec is None or isinstance(spec, workload.TopologyRequest):
        return spec
    level, _, mode = spec.rpartition("-")
    return workload.TopologyRequest(LEVELS[level], workload.TopologyMode(mode))


def make_pod_set(
    *,
    role: str = "worker",
    count: int = 1,
    cards: int = 8,
    milli: int | None = None,
    model: str | None = "H800",
    min_count: int | None = None,
    cpu_milli: int = POD_CPU_MILLI,
    memory_mib: int = POD_MEMORY_MIB,
    device_memory_mib: int = 0,
) -> workload.PodSet:
    """``count`` pods of ``cards`` cards of ``model`` (None: any model); ``milli`` makes a share."""
    request = make_pod(
        name=role,
        cards=cards,
        milli=milli,
        models=() if model is None or not cards else {model},
        cpu_milli=cpu_milli,
        memory_mib=memory_mib,
        device_memory_mib=device_memory_mib,
    )
    return workload.PodSet(role, count, request, min_count)


def make_gang(
    *,
    name: str = "g",
    pods: int = 2,
    cards: int = 8,
    milli: int | None = None,
    model: str | None = "H800",
    priority: int = 0,
    preemptible: bool = False,
    min_member: int | None = None,
    topology: str | workload.TopologyRequest | None = None,
    launcher: bool = False,
    pod_sets: Iterable[workload.PodSet] | None = None,
    queued_at: float = 0.0,
) -> workload.Gang:
    """A gang of ``pods`` workers of ``cards`` cards each, after a cpu-only launcher if ``launcher``.

    ``pod_sets`` replaces the launcher and workers. ``topology`` is a ``make_topology`` spec.
    """
    if pod_sets is None:
        workers = make_pod_set(count=pods, cards=cards, milli=milli, model=model)
        pod_sets = [make_pod_set(role="launcher", cards=0), workers] if launcher else [workers]
    return workload.Gang(
        name=name,
        pod_sets=tuple(pod_sets),
        min_member=min_member,
        priority=priority,
        preemptible=preemptible,
        topology=make_topology(topology),
        queued_at=queued_at,
    )


def make_allocations(ledger: ledger_.Ledger, gang: workload.Gang, *on: Where) -> tuple[ledger_.Allocation, ...]:
    """Allocations of the gang's first ``len(on)`` pods, in ``gang.pods()`` order, one per entry of ``on``.

    Named cards are taken as given, even if busy (so a test can build an over-committing
    plan); otherwise ``fit.choose`` picks them given the pods placed before, and raises
    ``ValueError`` if the pod does not fit. The ledger is not changed.
    """
    trial = ledger.copy()
    pods = gang.pods()
    if len(on) > len(pods):
        raise ValueError(f"gang {gang.name} has {len(pods)} pods, got {len(on)} places")
    allocations = []
    for pod, where in zip(pods, on, strict=False):
        name, cards = (where, None) if isinstance(where, str) else where
        i = ledger.cluster.index_of(name)
        if cards is None:
            cards = fit.choose(trial, i, pod, gang.cards)
            if cards is None:
                raise ValueError(f"pod {pod.name} does not fit on node {name}")
        allocation = scoring.allocation(pod, scoring.Placement(i, tuple(cards), 0))
        with contextlib.suppress(ledger_.CapacityError):
            trial.allocate(allocation)
        allocations.append(allocation)
    return tuple(allocations)


def make_running(
    ledger: ledger_.Ledger,
    gang: workload.Gang,
    *on: Where,
    started_at: float = 0.0,
    checkpointed_at: float | None = None,
) -> plan.Running:
    """Allocate the gang's pods in ``ledger`` where ``on`` says (see ``make_allocations``) and
    return it as running since ``started_at``. Fewer places than pods runs an elastic gang short.

    Raises ``CapacityError`` (ledger unchanged for that pod) if a pod does not fit."""
    allocations = make_allocations(ledger, gang, *on)
    for allocation in allocations:
        ledger.allocate(allocation)
    return plan.Running(gang, tuple(a.pod for a in allocations), started_at, checkpointed_at)


def make_snapshot(ledger: ledger_.Ledger, *running: plan.Running, now: float = 0.0) -> plan.Snapshot:
    """The snapshot of ``ledger`` with ``running`` gangs, at time ``now``."""
    return plan.Snapshot(ledger, {r.gang.name: r for r in running}, now)


def make_wait(gang: str, code: plan.ReasonCode = plan.ReasonCode.INSUFFICIENT_CAPACITY) -> plan.Wait:
    return plan.Wait(gang, code, f"gang {gang} waits in a test")


def make_plan(
    *,
    placed: Mapping[str, Sequence[ledger_.Allocation]] | None = None,
    evictions: Iterable[plan.Eviction] = (),
    waiting: Iterable[str] = (),
) -> plan.Plan:
    """A plan placing ``placed``, evicting ``evictions``; gangs named in ``waiting`` wait for capacity."""
    return plan.Plan(
        placed={name: tuple(allocations) for name, allocations in (placed or {}).items()},
        evictions=list(evictions),
        waiting={name: make_wait(name) for name in waiting},
    )


def make_eviction(
    running: plan.Running,
    *,
    for_gang: str,
    pods: Sequence[str] | None = None,
    whole: bool | None = None,
    now: float = 0.0,
) -> plan.Eviction:
    """Evict ``pods`` of a running gang (default: all of them) for ``for_gang``.

    ``whole`` defaults to whether every running pod goes. Lost work is each evicted pod's
    cards times the gang's progress at ``now``.
    """
    evicted = tuple(running.pods if pods is None else pods)
    cards = {pod.name: pod.cards for pod in running.gang.pods()}
    lost = sum(cards[pod] for pod in evicted if pod in cards) * running.progress_since(now)
    whole = set(evicted) == set(running.pods) if whole is None else whole
    return plan.Eviction(running.gang.name, evicted, whole, lost, for_gang)


def describe(snapshot: plan.Snapshot) -> str:
    """The nodes, their free milli per card, and where running gangs sit: enough to rebuild a failure."""
    ledger = snapshot.ledger
    lines = [
        f"{n.name} {n.model} island={n.labels.get(topology.ISLAND)} free={ledger.card_free[i]}"
        for i, n in enumerate(ledger.cluster.nodes)
    ]
    for r in snapshot.running.values():
        where = [
            (a.pod, ledger.cluster.nodes[a.node].name, [s.card for s in a.shares]) for a in map(ledger.get, r.pods)
        ]
        lines.append(f"running {r.gang.name} priority={r.gang.priority} preemptible={r.gang.preemptible} {where}")
    return "\n".join(lines)
