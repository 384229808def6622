"""The inventory: Kubernetes objects (plain dicts, camelCase) translated into the core's terms.

``cluster`` reads Node objects and AcceleratorPool specs into a ``Cluster``; ``ledger`` (from
``pods``, which also writes an allocation into pod annotations) rebuilds the allocation ledger
from Pod objects. Pure: no
Kubernetes client, no kopf. Bad labels and annotations never raise; they come back as
problems, sentences that name the object, the field and the fix.
"""

from __future__ import annotations

import collections
import dataclasses
import types
from collections.abc import Iterable, Mapping
from typing import Any

from archipelago import cluster as cluster_
from archipelago.api import resources
from archipelago.cluster import topology
from archipelago.inventory import nodes as nodes_
from archipelago.inventory.pods import ledger

__all__ = ["Inventory", "PoolFacts", "cluster", "ledger"]


@dataclasses.dataclass(frozen=True)
class PoolFacts:
    """What an AcceleratorPool's status shows: its ready nodes, healthy cards, and lost nodes.

    ``models`` maps each card model to its healthy cards in the pool (Ready nodes only). ``lost``
    names the pool's nodes whose pods are lost (not Ready for longer than the grace, or
    unreadable), sorted.
    """

    nodes: int = 0
    cards: int = 0
    models: Mapping[str, int] = dataclasses.field(default_factory=dict)
    lost: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Inventory:
    """The schedulable cluster read from Node objects, and what could not be scheduled on.

    ``cluster`` holds the Ready, readable nodes that belong to a pool, sorted by name; each
    node's ``pool`` is its AcceleratorPool's name. ``lost`` names the pool nodes left out (their
    pods hold resources the ledger cannot place), sorted. ``problems`` lists configuration
    errors, in node order. ``pools`` has facts for every pool, including empty ones.
    ``not_ready_until`` is when the first not-Ready node kept in the cluster runs out of its grace
    (epoch seconds; None when there is none): the reading is stale from then on.
    """

    cluster: cluster_.Cluster
    lost: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    pools: Mapping[str, PoolFacts] = dataclasses.field(default_factory=dict)
    not_ready_until: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pools", types.MappingProxyType(dict(self.pools)))


def cluster(
    nodes: Iterable[Mapping[str, Any]],
    pools: Mapping[str, resources.AcceleratorPoolSpec],
    *,
    now: float | None = None,
    lost_after_s: float = 0.0,
) -> Inventory:
    """Read Node objects into the cluster of the pools ``pools`` (AcceleratorPool name -> spec).

    A node that is not Ready for less than ``lost_after_s`` seconds at ``now`` (epoch seconds,
    from its Ready condition's ``lastTransitionTime``) stays in the cluster, tainted
    ``node.kubernetes.io/not-ready`` or ``unreachable`` with ``NoSchedule`` as the node lifecycle
    controller taints it: its pods keep their cards, nothing new is placed on it. Past that, or
    without ``now`` or a transition time, the node is lost and so are its pods. The operator's
    default grace is 300 s, the node lifecycle controller's eviction default (``config.Operator``).

    A node matching no pool is not part of the cluster (and not reported); a node matching
    several joins the first by name, and is reported. The topology levels are the pools'
    ``topologyLevels``; if pools disagree, the first pool's by name hold, and that is reported.
    A Node without a name, or a second Node of the same name, is ignored and reported.
    """
    levels, problems = _levels(pools)
    readings: list[nodes_.NodeReading] = []
    seen: set[str] = set()
    for body in nodes:
        name = (body.get("metadata") or {}).get("name")
        if not name:
            problems.append("a Node without metadata.name is ignored")
            continue
        if name in seen:
            problems.append(f"node {name}: listed twice; the second is ignored")
            continue
        seen.add(name)
        names = nodes_.matching(body, pools)
        if not names:
            continue
        if len(names) > 1:
            problems.append(
                f"node {name}: matched by pools {', '.join(names)}; it joins {names[0]} (the first by name): "
                "make the pools' nodeSelectors disjoint"
            )
        reading = nodes_.node(body, names[0], pools[names[0]])
        problems.extend(reading.problems)
        readings.append(reading)
    waiting = [r for r in readings if not r.usable and r.within_grace(now, lost_after_s)]
    kept = [r.node for r in readings if r.usable and r.node is not None] + [r.tainted() for r in waiting]
    lost = sorted(r.name for r in readings if not r.usable and r not in waiting)
    return Inventory(
        cluster=cluster_.build(sorted(kept, key=lambda n: n.name), levels),
        lost=tuple(lost),
        problems=tuple(problems),
        pools=_facts(pools, readings, frozenset(lost)),
        not_ready_until=min((r.not_ready[1] + lost_after_s for r in waiting if r.not_ready), default=None),
    )


def _levels(pools: Mapping[str, resources.AcceleratorPoolSpec]) -> tuple[tuple[str, ...], list[str]]:
    if not pools:
        return topology.DEFAULT_LEVELS, []
    names = sorted(pools)
    first = tuple(pools[names[0]].topology_levels)
    problems = [
        f"pool {name}: topologyLevels {list(pools[name].topology_levels)} differ from pool {names[0]}'s "
        f"{list(first)}; all pools use {names[0]}'s: give every pool the same levels"
        for name in names[1:]
        if tuple(pools[name].topology_levels) != first
    ]
    distinct = tuple(dict.fromkeys(first))
    if distinct != first:
        problems.append(f"pool {names[0]}: topologyLevels {list(first)} repeat a level; duplicates are dropped")
    return distinct, problems


def _facts(
    pools: Mapping[str, resources.AcceleratorPoolSpec], readings: list[nodes_.NodeReading], lost: frozenset[str]
) -> dict[str, PoolFacts]:
    by_pool: dict[str, list[nodes_.NodeReading]] = collections.defaultdict(list)
    for reading in readings:
        by_pool[reading.pool].append(reading)
    facts: dict[str, PoolFacts] = {}
    for name in sorted(pools):
        members = by_pool.get(name, [])
        usable = [r.node for r in members if r.usable and r.node is not None]
        models: collections.Counter[str] = collections.Counter()
        for n in usable:
            if n.model is not None:
                models[n.model] += sum(d.healthy for d in n.devices)
        facts[name] = PoolFacts(
            nodes=len(usable),
            cards=sum(models.values()),
            models=dict(sorted(models.items())),
            lost=tuple(sorted(r.name for r in members if r.name in lost)),
        )
    return facts
