"""Keyword builders for the cluster model, the ledger and pod requests, so tests read as sentences.

Defaults are generous where a test usually does not care: a node has 128 cores and 1 TiB of
memory, a pod asks for 1 core and 1 GiB. A test that cares about a quantity names it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from archipelago import cluster as cluster_
from archipelago import policies, workload
from archipelago.cluster import devices, nodes, topology
from archipelago.cluster import ledger as ledger_
from archipelago.policies import scoring

NODE_CPU_MILLI = 128_000
NODE_MEMORY_MIB = 1024 * 1024
POD_CPU_MILLI = 1_000
POD_MEMORY_MIB = 1024


def make_node(
    *,
    name: str = "n0",
    cards: int = 8,
    model: str = "H800",
    island: str | None = None,
    spine: str | None = None,
    cpu_milli: int = NODE_CPU_MILLI,
    memory_mib: int = NODE_MEMORY_MIB,
    taints: Iterable[nodes.Taint] = (),
    unhealthy: Iterable[int] = (),
    labels: Mapping[str, str] | None = None,
    pool: str = "default",
) -> nodes.Node:
    """A node of ``cards`` cards of ``model``; ``island``/``spine`` become topology labels.

    Nodes with the same ``island`` share it even without a ``spine``; a node with no island
    label is an island of its own.
    """
    all_labels = dict(labels or {})
    if island is not None:
        all_labels[topology.ISLAND] = island
    if spine is not None:
        all_labels[topology.SPINE] = spine
    return nodes.Node(
        name=name,
        cpu_milli=cpu_milli,
        memory_mib=memory_mib,
        devices=devices.cards(model, cards, unhealthy=frozenset(unhealthy)),
        pool=pool,
        labels=all_labels,
        taints=tuple(taints),
    )


def make_nodes(count: int, *, prefix: str = "n", **node_fields) -> list[nodes.Node]:
    """``count`` alike nodes named ``<prefix>0``, ``<prefix>1``, ..."""
    return [make_node(name=f"{prefix}{i}", **node_fields) for i in range(count)]


def make_cluster(*node_list: nodes.Node, levels: Sequence[str] = topology.DEFAULT_LEVELS) -> cluster_.Cluster:
    return cluster_.build(node_list, levels)


def make_pod(
    *,
    name: str = "p0",
    cards: int = 0,
    milli: int | None = None,
    cpu_milli: int = POD_CPU_MILLI,
    memory_mib: int = POD_MEMORY_MIB,
    device_memory_mib: int = 0,
    models: Iterable[str] | str = (),
    resource: str | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Iterable[nodes.Toleration] = (),
    priority: int = 0,
    gang: str | None = None,
    role: str | None = None,
) -> workload.PodRequest:
    """A pod asking for ``cards`` cards of ``milli`` milli-cards each (default: whole cards)."""
    return workload.PodRequest(
        name=name,
        cpu_milli=cpu_milli,
        memory_mib=memory_mib,
        cards=cards,
        milli_per_card=0 if milli is None else milli,
        device_memory_mib=device_memory_mib,
        models=frozenset([models] if isinstance(models, str) else models),
        resource=resource,
        node_selector=dict(node_selector or {}),
        tolerations=tuple(tolerations),
        priority=priority,
        gang=gang,
        role=role,
    )


def make_ledger(cluster: cluster_.Cluster) -> ledger_.Ledger:
    return ledger_.Ledger(cluster)


def make_task(
    *, cards: int, milli: int = 1000, cpu_milli: int = 0, models: Iterable[str] = (), weight: float
) -> workload.TypicalTask:
    """One shape of an FGD profile; a cpu-only shape (``cards=0``) has no milli."""
    return workload.TypicalTask(cpu_milli, milli if cards else 0, cards, frozenset(models), weight)


ONE_CARD_PROFILE = (make_task(cards=1, weight=1.0),)


def make_policy(
    name: str,
    ledger: ledger_.Ledger,
    *,
    profile: Sequence[workload.TypicalTask] = ONE_CARD_PROFILE,
    rank: Sequence[int] | None = None,
    seed: int = 0,
) -> scoring.Policy:
    """The policy called ``name`` over ``ledger``; FGD gets a one-whole-card profile by default."""
    context = scoring.Context(profile=tuple(profile), rank=None if rank is None else np.asarray(rank), seed=seed)
    return policies.create(name, ledger, context)


def _node_index(ledger: ledger_.Ledger, node: int | str) -> int:
    return ledger.cluster.index_of(node) if isinstance(node, str) else node


def occupy(
    ledger: ledger_.Ledger,
    node: int | str,
    *,
    milli: Mapping[int, int] | None = None,
    card_memory_mib: Mapping[int, int] | None = None,
    cpu_milli: int = 0,
    memory_mib: int = 0,
    pod: str | None = None,
) -> ledger_.Allocation:
    """Allocate ``milli[card]`` milli (and ``card_memory_mib[card]`` MiB) of each card named.

    The filler pod gets a unique name unless ``pod`` is given. Returns the allocation.
    """
    i = _node_index(ledger, node)
    milli = dict(milli or {})
    card_memory_mib = dict(card_memory_mib or {})
    shares = tuple(
        ledger_.CardShare(card, milli.get(card, 0), card_memory_mib.get(card, 0))
        for card in sorted(set(milli) | set(card_memory_mib))
    )
    allocation = ledger_.Allocation(
        pod=pod if pod is not None else f"filler-{i}-g{ledger.generation}",
        node=i,
        cpu_milli=cpu_milli,
        memory_mib=memory_mib,
        shares=shares,
    )
    ledger.allocate(allocation)
    return allocation


def leave_free(
    ledger: ledger_.Ledger,
    node: int | str,
    cards: Sequence[int] | None = None,
    *,
    cpu_milli: int | None = None,
    memory_mib: int | None = None,
    pod: str | None = None,
) -> ledger_.Allocation:
    """Allocate one filler pod so that node ``node`` has exactly ``cards[j]`` milli free on card j.

    ``cpu_milli`` and ``memory_mib``, if given, are the free amounts to leave on the node.
    """
    i = _node_index(ledger, node)
    free = ledger.card_free[i]
    wanted = list(free) if cards is None else list(cards)
    if len(wanted) != len(free):
        raise ValueError(f"node {i} has {len(free)} cards, got {len(wanted)} free values")
    return occupy(
        ledger,
        i,
        milli={j: free[j] - f for j, f in enumerate(wanted) if free[j] != f},
        cpu_milli=0 if cpu_milli is None else ledger.cpu_free[i] - cpu_milli,
        memory_mib=0 if memory_mib is None else ledger.memory_free[i] - memory_mib,
        pod=pod,
    )
