"""Two baseline gang placers to measure the cycle against, with the signature of ``cycle.run``.

``first_fit`` is what kube-scheduler with the coscheduling plugin does; ``volcano_like`` is
Volcano's allocate action with the binpack plugin and soft network topology. Both keep a gang
whole or drop it (a tentative placement, committed or rolled back as a unit), never preempt,
and never explain in depth: every gang they leave pending waits with
``INSUFFICIENT_CAPACITY`` and one sentence, whatever the real cause.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from archipelago import cluster as cluster_
from archipelago import workload
from archipelago.cluster import ledger as ledger_
from archipelago.cluster import topology
from archipelago.placement import fit, plan
from archipelago.policies import scoring

Pick = Callable[[workload.PodRequest], tuple[int, tuple[int, ...]] | None]
"""Chooses the node and cards for one pod on the working ledger, or None if it fits nowhere."""


def first_fit(snapshot: plan.Snapshot, pending: Sequence[workload.Gang], config: plan.Config) -> plan.Plan:
    """Greedy first fit, gang by gang in queue order (priority desc, then ``queued_at``).

    Each pod goes to the first node, in node order, where ``fit.choose`` succeeds. A gang that
    requires one topology domain is held there the way kube-scheduler holds pods with a
    required pod affinity to their own gang: the first pod (one of the largest) lands anywhere,
    the rest must join its domain. A preferred topology is ignored. ``config`` is accepted for
    the signature and unused.
    """
    view = _View(snapshot)

    def place(gang: workload.Gang) -> tuple[ledger_.Allocation, ...] | None:
        request = gang.topology
        domain: np.ndarray | None = None  # the required domain, once the first pod has landed
        groups: set[int] | None = None  # and its link groups, for a gang that requires one

        def pick(pod: workload.PodRequest) -> tuple[int, tuple[int, ...]] | None:
            nonlocal domain, groups
            for i in view.candidates(pod, domain).tolist():
                cards = fit.choose(view.ledger, i, pod, gang.cards, within=groups)
                if cards is not None:
                    if request is not None and request.required and domain is None:
                        domain, groups = view.domain_of(request.level, i, cards)
                    return i, cards
            return None

        return _tentative(view.ledger, gang, pick)

    return _cycle(view, pending, place)


def volcano_like(snapshot: plan.Snapshot, pending: Sequence[workload.Gang], config: plan.Config) -> plan.Plan:
    """Volcano's allocate action with binpack and soft network topology, gang by gang in queue order.

    A gang of more than one pod first tries the single domains of its topology level (the
    finest label level, the island, when it names none) with room for it, most allocated
    first (binpack across islands). If none holds it, a gang whose topology is not ``required``
    spills over all nodes. Each pod goes to the node with the highest binpack score (card
    utilisation once the pod is placed, so fullest first), ties by node name. Card utilisation
    stands for Volcano's weighted sum because cards dominate its binpack weights for GPU work.
    ``config`` is accepted for the signature and unused.
    """
    view = _View(snapshot)
    by_name = view.static.by_name

    def binpack(gang: workload.Gang, among: np.ndarray | None, within: set[int] | None) -> Pick:
        def pick(pod: workload.PodRequest) -> tuple[int, tuple[int, ...]] | None:
            nodes = view.candidates(pod, among)
            used = 1.0 - (view.ledger.free_milli[nodes] - pod.milli) / view.capacity[nodes]
            for i in nodes[np.lexsort((by_name[nodes], -used))].tolist():
                cards = fit.choose(view.ledger, i, pod, gang.cards, within=within)
                if cards is not None:
                    return i, cards
            return None

        return pick

    def place(gang: workload.Gang) -> tuple[ledger_.Allocation, ...] | None:
        request = gang.topology
        required = request is not None and request.required
        if gang.size > 1 or required:
            level = request.level if request is not None else view.finest
            for nodes, within in view.fullest_domains(level, gang):
                allocations = _tentative(view.ledger, gang, binpack(gang, nodes, within))
                if allocations is not None:
                    return allocations
            if required:
                return None
        return _tentative(view.ledger, gang, binpack(gang, None, None))

    return _cycle(view, pending, place)


class _View:
    """One cycle's working copy of the ledger, with the per-node arrays the placers filter by."""

    def __init__(self, snapshot: plan.Snapshot) -> None:
        self.ledger = snapshot.ledger.copy()
        self.cluster = self.ledger.cluster
        self.static = _Static.of(self.cluster)
        self.model, self.card_capacity = self.static.model, self.static.capacity
        self.capacity = np.maximum(self.card_capacity, 1.0)
        self.everywhere = np.arange(len(self.cluster))
        self.finest = self.cluster.topology.levels[-1] if self.cluster.topology.levels else topology.HOSTNAME
        self._masks: dict[frozenset[str], np.ndarray] = {}
        self._domains = self.static.domains

    def allowed(self, models: frozenset[str]) -> np.ndarray:
        """Mask of the nodes with one of ``models`` (all nodes with cards when empty)."""
        mask = self._masks.get(models)
        if mask is None:
            mask = np.isin(self.model, list(models)) if models else self.model != ""
            self._masks[models] = mask
        return mask

    def candidates(self, pod: workload.PodRequest, among: np.ndarray | None = None) -> np.ndarray:
        """Nodes, in node order, that may hold ``pod``: the right model and enough free milli-cards.

        A cheap superset of where it fits; ``fit.choose`` decides.
        """
        nodes = self.everywhere if among is None else among
        if pod.cards:
            nodes = nodes[(self.ledger.free_milli[nodes] >= pod.milli) & self.allowed(pod.models)[nodes]]
        return nodes

    def could_fit(self, gang: workload.Gang) -> bool:
        """A necessary condition, checked before any pod is tried: each pod set's lower bound
        fits in the ``pod.milli``-sized holes of its candidate nodes."""
        for pod_set, bound in zip(gang.pod_sets, gang.lower_bounds(), strict=True):
            pod = pod_set.request
            if bound and pod.milli:
                holes = self.ledger.free_milli[self.candidates(pod)] // pod.milli
                if int(holes.sum()) < bound:
                    return False
        return True

    def domain_of(self, level: str, i: int, cards: tuple[int, ...]) -> tuple[np.ndarray, set[int] | None]:
        """The nodes of node ``i``'s domain at ``level``, and the link groups of ``cards`` for ``LINK_GROUP``."""
        ids, members = self._level(level)
        if level == workload.LINK_GROUP:
            return members[ids[i]], {self.cluster.nodes[i].devices[j].link_group for j in cards} or None
        return members[ids[i]], None

    def fullest_domains(self, level: str, gang: workload.Gang) -> list[tuple[np.ndarray, set[int] | None]]:
        """The domains at ``level`` with enough free cards of the gang's models, most allocated first.

        For ``LINK_GROUP`` each link group of each node is a domain of its own.
        """
        ids, members = self._level(level)
        models = frozenset().union(*(s.request.models for s in gang.pod_sets if s.request.cards))
        free = np.where(self.allowed(models), self.ledger.free_milli, 0) if gang.milli else self.ledger.free_milli
        free_of = np.bincount(ids, weights=free, minlength=len(members))
        need = sum(s.request.milli * n for s, n in zip(gang.pod_sets, gang.lower_bounds(), strict=True))
        capacity = np.bincount(ids, weights=self.card_capacity, minlength=len(members))
        total_free = np.bincount(ids, weights=self.ledger.free_milli, minlength=len(members))
        used = 1.0 - np.divide(total_free, capacity, out=np.ones_like(capacity), where=capacity > 0)
        room = np.flatnonzero(free_of >= need)
        chosen = room[np.lexsort((room, -used[room]))].tolist()
        if level != workload.LINK_GROUP:
            return [(members[d], None) for d in chosen]
        nodes = self.cluster.nodes
        return [(members[d], {g}) for d in chosen for g in sorted({c.link_group for c in nodes[members[d][0]].devices})]

    def _level(self, level: str) -> tuple[np.ndarray, list[np.ndarray]]:
        """Each node's domain number at ``level``, and the nodes of every domain."""
        if level not in self._domains:
            # A link group lies inside one node; a level the cluster does not know makes every node its own domain.
            known = level if level in self.cluster.topology.levels else topology.HOSTNAME
            members = [np.asarray(nodes) for nodes in self.cluster.domains(known).values()]
            self._domains[level] = (self.cluster.domain_ids(known), members)
        return self._domains[level]


class _Static:
    """Per-node arrays of one cluster that no allocation changes, built once per cluster
    (``Cluster.derived``), so a simulation pays for them once instead of once per cycle."""

    def __init__(self, cluster: cluster_.Cluster) -> None:
        nodes = cluster.nodes
        self.model = np.array([n.model or "" for n in nodes])
        self.capacity = np.array([n.capacity_milli for n in nodes], dtype=np.float64)
        self.by_name = np.argsort(np.argsort([n.name for n in nodes], kind="stable"))
        self.domains: dict[str, tuple[np.ndarray, list[np.ndarray]]] = {}

    @classmethod
    def of(cls, cluster: cluster_.Cluster) -> _Static:
        return cluster.derived("placement.baselines", cls)


def _cycle(
    view: _View,
    pending: Sequence[workload.Gang],
    place: Callable[[workload.Gang], tuple[ledger_.Allocation, ...] | None],
) -> plan.Plan:
    """Place gangs in queue order on the view's ledger; the rest wait."""
    result = plan.Plan()
    for gang in sorted(pending, key=lambda g: (-g.priority, g.queued_at, g.name)):
        allocations = place(gang) if view.could_fit(gang) else None
        if allocations is None:
            message = f"gang {gang.name} ({gang.cards} cards in {gang.size} pods) does not fit the free capacity"
            result.waiting[gang.name] = plan.Wait(gang.name, plan.ReasonCode.INSUFFICIENT_CAPACITY, message)
        else:
            result.placed[gang.name] = allocations
    return result


def _tentative(ledger: ledger_.Ledger, gang: workload.Gang, pick: Pick) -> tuple[ledger_.Allocation, ...] | None:
    """Allocate the gang pod by pod on ``ledger``; keep all of it, or release all and return None.

    Pod sets go largest pods first (a cpu-only launcher last, so it follows the workers into
    their domain). A pod set stops at its first pod that does not fit (the ones after it are
    identical), so an elastic gang keeps as many pods as fit, provided every lower bound and
    ``min_member`` hold.
    """
    placed: list[ledger_.Allocation] = []
    sets = sorted(zip(gang.pod_sets, gang.lower_bounds(), strict=True), key=lambda sb: -sb[0].request.milli)
    for pod_set, bound in sets:
        got = 0
        for k in range(pod_set.count):
            pod = gang.pod(pod_set, k)
            choice = pick(pod)
            if choice is None:
                break
            allocation = scoring.allocation(pod, scoring.Placement(choice[0], choice[1], 0))
            ledger.allocate(allocation)
            placed.append(allocation)
            got += 1
        if got < bound:
            break
    else:
        if len(placed) >= gang.min_member:  # type: ignore[operator]
            return tuple(placed)
    for allocation in placed:
        ledger.release(allocation.pod)
    return None
