"""The aggregate view of a cluster that the greedy placer and the solver share.

Nodes in the same island (the finest topology label level) with the same static facts
(model, resource, pool, taints and non-topology labels) are interchangeable to a gang, so
they form one *pool*. A node that some pending pod avoids by name (``PodRequest.avoid_nodes``)
is not interchangeable with the others and forms a pool of its own. A pool keeps, for every
power-of-two slot size ``s``, the number of ``s``-card pods its nodes could still take
(``fit.slots``), plus its free cpu, memory and milli-cards. ``State`` keeps these sums
current as a working ledger changes.

Following ``../shared/notes/cpsat-gang-model.md``, the solver then decides counts of pods per
(gang, pool) rather than a pod-to-node assignment: at 10,000 cards about 40 pools instead of
1,250 nodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from archipelago import cluster as cluster_
from archipelago import workload
from archipelago.cluster import ledger as ledger_
from archipelago.cluster import nodes as nodes_
from archipelago.cluster import topology
from archipelago.placement import fit


@dataclasses.dataclass
class Pool:
    """Interchangeable nodes of one island. ``slots[s]`` counts free ``s``-card slots (see ``fit.slots``)."""

    index: int
    nodes: list[int]
    path: topology.DomainId
    """The island's domain at every label level, coarse to fine."""
    node: nodes_.Node
    """A representative node, for static checks (model, taints, selector, link rules)."""
    slots: list[int]
    private: bool = False
    """Its nodes lack the finest island label: each is an island of its own, so the pool never
    counts as one domain for a ``required`` gang (see ``topology.Topology.path``)."""
    cpu: int = 0
    memory: int = 0
    milli: int = 0

    def domain(self, depth: int) -> topology.DomainId:
        return self.path[: depth + 1]


def avoid_of(gangs: Iterable[workload.Gang]) -> frozenset[str]:
    """The node names any pod of ``gangs`` avoids: the ``isolate`` argument of ``State``."""
    return frozenset().union(*(s.request.avoid_nodes for g in gangs for s in g.pod_sets))


def slot_sizes(max_cards: int) -> tuple[int, ...]:
    """Powers of two up to ``max_cards``: the slot sizes the aggregate capacity tracks."""
    sizes, s = [], 1
    while s <= max(1, max_cards):
        sizes.append(s)
        s *= 2
    return tuple(sizes)


def slot_demand(cards: int, size: int) -> int:
    """``size``-slots one pod of ``cards`` whole cards uses: ``cards / size`` (rounded up), 0 if smaller."""
    return -(-cards // size) if cards >= size else 0


def _signature(node: nodes_.Node, levels: Sequence[str], isolate: frozenset[str]) -> tuple:
    labels = tuple(sorted((k, v) for k, v in node.labels.items() if k not in levels and k != topology.HOSTNAME))
    resource = node.devices[0].resource if node.devices else None
    alone = node.name if node.name in isolate else None
    return (node.model, resource, node.card_count, node.pool, node.taints, node.links, labels, alone)


class _Layout:
    """Which nodes of a cluster form which pool: fixed for the cluster and the isolated nodes,
    so made once per pair (``Cluster.derived``). It also remembers each node's slots for the
    free cards they were counted from, since most nodes are unchanged from one cycle to the next."""

    def __init__(self, cluster: cluster_.Cluster, isolate: frozenset[str] = frozenset()) -> None:
        levels = cluster.topology.levels
        self.sizes = slot_sizes(max((n.card_count for n in cluster.nodes), default=1))
        self.pools: list[Pool] = []  # with no slots counted: templates
        self.pool_of: list[int] = [0] * len(cluster)
        self.slots: list[tuple[list[int], list[int]] | None] = [None] * len(cluster)
        self._arrays: list[np.ndarray] | None = None
        keys: dict[tuple, int] = {}
        for i, node in enumerate(cluster.nodes):
            path = cluster.path(i)[: len(levels)]
            private = bool(path) and path[-1].startswith("<")
            if private:
                # Unlabelled nodes are interchangeable for capacity; one pool keeps the model small.
                path = tuple("<unlabelled>" if v.startswith("<") else v for v in path)
            key = (path, _signature(node, levels, isolate))
            k = keys.get(key)
            if k is None:
                k = keys[key] = len(self.pools)
                self.pools.append(Pool(k, [], path, node, [], private))
            self.pools[k].nodes.append(i)
            self.pool_of[i] = k

    def node_array(self, k: int) -> np.ndarray:
        """Pool ``k``'s nodes as an array (made on first use)."""
        if self._arrays is None:
            self._arrays = [np.asarray(p.nodes, dtype=np.int64) for p in self.pools]
        return self._arrays[k]

    def node_slots(self, ledger: ledger_.Ledger, i: int) -> list[int]:
        """Node ``i``'s free slots per size, recounted only when its free cards changed."""
        free = ledger.card_free[i]
        known = self.slots[i]
        if known is not None and known[0] == free:
            return known[1]
        node = ledger.cluster.nodes[i]
        per_group = fit.whole_free(ledger, i)
        counted = [fit.slots(node, per_group, s) for s in self.sizes]
        self.slots[i] = (list(free), counted)
        return counted


class State:
    """A working ledger and the pool sums kept in step with it.

    ``allocate`` and ``release`` go through the ledger (which refuses any over-commit) and
    update the affected node's slots and its pool's totals. ``isolate`` names the nodes that
    pending pods avoid (``avoid_of``): each becomes a pool of its own, so that a pool's
    representative node answers static checks for all its nodes.
    """

    def __init__(self, ledger: ledger_.Ledger, isolate: frozenset[str] = frozenset()) -> None:
        self.ledger = ledger
        isolate = isolate & ledger.cluster.names() if isolate else isolate
        if isolate:
            # Only the latest isolated layout is kept: avoid sets change with every restart,
            # and the operator keeps one cluster for as long as its nodes do not change.
            latest: dict[frozenset[str], _Layout] = ledger.cluster.derived("placement.pools.isolated", lambda c: {})
            layout = latest.get(isolate)
            if layout is None:
                latest.clear()
                layout = latest[isolate] = _Layout(ledger.cluster, isolate)
        else:
            layout = ledger.cluster.derived("placement.pools", _Layout)
        self._layout = layout
        self.sizes = layout.sizes
        self.pools = [dataclasses.replace(p, slots=[0] * len(self.sizes)) for p in layout.pools]
        self.pool_of = layout.pool_of
        self.node_slots: list[list[int]] = [[] for _ in ledger.cluster.nodes]
        self.whole = np.zeros(len(ledger.cluster), dtype=np.int64)
        """Wholly free cards per node (its 1-card slots), for numpy aggregates."""
        for i in range(len(ledger.cluster)):
            self._add(i, +1)

    def copy(self) -> State:
        """An independent state over a copy of the ledger; the sums are copied, not recomputed."""
        other = object.__new__(State)
        other.ledger = self.ledger.copy()
        other._layout, other.sizes = self._layout, self.sizes
        other.pools = [dataclasses.replace(p, slots=list(p.slots)) for p in self.pools]  # members are fixed
        other.pool_of = self.pool_of  # fixed
        other.node_slots = list(self.node_slots)  # rows are replaced, never changed in place
        other.whole = self.whole.copy()
        return other

    def _add(self, i: int, sign: int) -> None:
        pool = self.pools[self.pool_of[i]]
        if sign > 0:
            self.node_slots[i] = slots = self._layout.node_slots(self.ledger, i)
            self.whole[i] = slots[0]  # slot sizes start at 1
        for k, count in enumerate(self.node_slots[i]):
            pool.slots[k] += sign * count
        pool.cpu += sign * self.ledger.cpu_free[i]
        pool.memory += sign * self.ledger.memory_free[i]
        pool.milli += sign * int(self.ledger.free_milli[i])

    def allocate(self, allocation: ledger_.Allocation) -> None:
        self._add(allocation.node, -1)
        try:
            self.ledger.allocate(allocation)
        finally:
            self._add(allocation.node, +1)

    def release(self, pod: str) -> ledger_.Allocation:
        node = self.ledger.get(pod)
        if node is None:
            raise KeyError(pod)
        self._add(node.node, -1)
        try:
            return self.ledger.release(pod)
        finally:
            self._add(node.node, +1)

    def undo(self, allocations: Iterable[ledger_.Allocation]) -> None:
        """Release ``allocations`` newest first: roll back a tentative placement."""
        for a in reversed(list(allocations)):
            self.release(a.pod)

    def nodes_of(self, pool_indices: Iterable[int]) -> np.ndarray:
        """The nodes of these pools, as an array."""
        arrays = [self._layout.node_array(k) for k in pool_indices]
        return np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)

    def eligible(self, pod: workload.PodRequest, gang_cards: int) -> list[int]:
        """Pools whose nodes ``pod`` may run on (statically: model, taints, selector, link rules)."""
        return [p.index for p in self.pools if fit.admits(p.node, pod, gang_cards)]

    def gang_pools(self, gang: workload.Gang) -> list[int]:
        """Pools for ``gang``: where its card-holding pod sets may run (all pod sets if none holds cards)."""
        sets = [s for s in gang.pod_sets if s.request.cards] or list(gang.pod_sets)
        return sorted({k for s in sets for k in self.eligible(s.request, gang.cards)})

    def fits(self, demand: Iterable[tuple[workload.PodRequest, int]], pools: Iterable[int]) -> bool:
        """Aggregate check: could ``count`` pods of each request fit these pools' free capacity?

        Exact for power-of-two whole-card pods on one pool; optimistic across pools of
        different link rules and for cpu, memory and fractional shares (the caller still
        places pod by pod).
        """
        chosen = [self.pools[k] for k in pools]
        need_slots = [0] * len(self.sizes)
        cpu = memory = milli = 0
        for pod, count in demand:
            cpu += pod.cpu_milli * count
            memory += pod.memory_mib * count
            milli += pod.milli * count
            if pod.cards and not pod.sharing:
                for k, s in enumerate(self.sizes):
                    need_slots[k] += slot_demand(pod.cards, s) * count
        if cpu > sum(p.cpu for p in chosen) or memory > sum(p.memory for p in chosen):
            return False
        if milli > sum(p.milli for p in chosen):
            return False
        return all(need <= sum(p.slots[k] for p in chosen) for k, need in enumerate(need_slots) if need)
