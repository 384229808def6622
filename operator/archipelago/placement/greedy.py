"""The greedy gang placer: the solver's hint, and the whole answer when time runs out.

Gangs go in queue order: priority, then arrival, then larger first (under
``plan.Queueing.MOST_GANGS``: priority, then fewer cards, then arrival). Each gang is placed
tentatively on the working state and rolled back unless it is whole (at least
``min_member`` pods and each pod set's lower bound). Where a gang goes:

1. a gang that requires one node (or one link group) tries nodes tightest first;
2. otherwise it tries the domains of its topology level (default: the island) that the
   aggregate check says can hold it, tightest first (best fit keeps big islands whole);
3. a gang whose topology is only preferred then spills over every eligible node, filling
   the domains with the most free capacity first, so it spans as few as possible.

Inside the chosen nodes, pods go largest first, each to the tightest node that fits
(``fit.choose``), which is the best-fit-decreasing order under which the solver's slot
capacity is exact.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from archipelago import workload
from archipelago.cluster import ledger as ledger_
from archipelago.cluster import topology
from archipelago.placement import fit, plan, pools
from archipelago.policies import scoring


def order(gangs: Iterable[workload.Gang], queueing: plan.Queueing = plan.Queueing.MOST_CARDS) -> list[workload.Gang]:
    """Queue order: higher priority first, then earlier ``queued_at``, then more cards, then
    name; under ``MOST_GANGS`` fewer cards come before earlier ``queued_at``."""
    if queueing is plan.Queueing.MOST_GANGS:
        return sorted(gangs, key=lambda g: (-g.priority, g.cards, g.queued_at, g.name))
    return sorted(gangs, key=lambda g: (-g.priority, g.queued_at, -g.cards, g.name))


def run(state: pools.State, gangs: Sequence[workload.Gang]) -> dict[str, tuple[ledger_.Allocation, ...]]:
    """Place ``gangs`` in the given order on ``state``; returns the allocations of each placed gang."""
    placed: dict[str, tuple[ledger_.Allocation, ...]] = {}
    for gang in gangs:
        allocations = place(state, gang)
        if allocations is not None:
            placed[gang.name] = allocations
    return placed


def place(state: pools.State, gang: workload.Gang) -> tuple[ledger_.Allocation, ...] | None:
    """Place ``gang`` whole on ``state`` (allocations kept), or return None with ``state`` unchanged."""
    cluster = state.ledger.cluster
    request = gang.topology
    eligible = set(state.gang_pools(gang))
    if not eligible:
        return None
    if request is not None and request.one_node:
        return _on_one_node(state, gang, eligible, per_group=request.level == workload.LINK_GROUP)
    depth = _depth(cluster.topology, request)
    mandatory = [(s.request, n) for s, n in zip(gang.pod_sets, gang.lower_bounds(), strict=True)]
    if depth is not None:
        domains: dict[topology.DomainId, list[int]] = {}
        required = request is not None and request.required
        for k in sorted(eligible):
            if not (required and state.pools[k].private):
                domains.setdefault(state.pools[k].domain(depth), []).append(k)
        fitting = [ks for ks in domains.values() if state.fits(mandatory, ks)]
        for ks in sorted(fitting, key=lambda ks: (sum(state.pools[k].milli for k in ks), ks[0])):
            allocations = _fill(state, gang, {k: 0 for k in ks})
            if allocations is not None:
                return allocations
        if request is not None and request.required:
            return None
        # Spill: the roomiest domains first, so the gang spans as few as possible.
        roomy = sorted(domains.values(), key=lambda ks: (-sum(state.pools[k].milli for k in ks), ks[0]))
        rank = {k: r for r, ks in enumerate(roomy) for k in ks}
    else:
        rank = {k: 0 for k in eligible}
    return _fill(state, gang, rank)


def grow(
    state: pools.State, gang: workload.Gang, allocations: Sequence[ledger_.Allocation]
) -> tuple[ledger_.Allocation, ...]:
    """``allocations`` of an admitted ``gang`` plus those of its missing pods that now fit on
    ``state`` (kept there): an elastic gang admitted short takes the room left after the plan.

    Pods go to nodes of the domains the gang already uses first (at its topology level, default
    the island), tightest node first; a gang that requires a domain grows only inside it, and
    one that requires one node or link group does not grow.
    """
    request = gang.topology
    if len(allocations) >= gang.size or (request is not None and request.one_node):
        return tuple(allocations)
    cluster = state.ledger.cluster
    depth = _depth(cluster.topology, request)
    used = {cluster.path(a.node)[: depth + 1] for a in allocations} if depth is not None else set()
    required = request is not None and request.required and depth is not None
    rank = {}  # the pools it already uses first; a required domain's only
    for pool in state.pools:
        near = depth is None or pool.domain(depth) in used
        if near or not required:
            rank[pool.index] = int(not near)
    done = list(allocations)
    have = {a.pod for a in allocations}
    for pod_set in sorted(gang.pod_sets, key=lambda s: -s.request.milli):
        queue = _queue(state, pod_set.request, gang.cards, rank)
        for index in range(pod_set.count):
            pod = gang.pod(pod_set, index)
            if pod.name in have:
                continue
            allocation = place_pod(state, pod, gang.cards, queue)
            if allocation is None:
                break
            done.append(allocation)
    return tuple(done)


def _depth(topo: topology.Topology, request: workload.TopologyRequest | None) -> int | None:
    """The label level a gang's pods gather at: its request's, else the finest (the island)."""
    if request is not None and request.level in topo.levels:
        return topo.depth(request.level)
    if request is not None and request.level in (topology.HOSTNAME, workload.LINK_GROUP):
        return None
    return len(topo.levels) - 1 if topo.levels else None


def _fill(state: pools.State, gang: workload.Gang, rank: dict[int, int]) -> tuple[ledger_.Allocation, ...] | None:
    """Place the gang's pods on the nodes of pools ``rank`` (lower rank first, then tightest)."""
    done: list[ledger_.Allocation] = []
    sets = sorted(zip(gang.pod_sets, gang.lower_bounds(), strict=True), key=lambda sb: -sb[0].request.milli)
    queues = {pod_set.role: _queue(state, pod_set.request, gang.cards, rank) for pod_set, _ in sets}
    for phase in ("mandatory", "optional"):
        for pod_set, lower in sets:
            indices = range(lower) if phase == "mandatory" else range(lower, pod_set.count)
            for index in indices:
                allocation = place_pod(state, gang.pod(pod_set, index), gang.cards, queues[pod_set.role])
                if allocation is None:
                    if phase == "optional":
                        break
                    state.undo(done)
                    return None
                done.append(allocation)
    return _whole(state, gang, done)


def _queue(
    state: pools.State, request: workload.PodRequest, gang_cards: int, rank: dict[int, int]
) -> list[tuple[int, int, int]]:
    """``place_pod``'s queue: the nodes of the pools in ``rank`` that ``request`` may use, as
    ``(rank, free milli, node)``, lower rank first, then tightest."""
    ks = set(state.eligible(request, gang_cards)) & rank.keys()
    return sorted((rank[k], int(state.ledger.free_milli[i]), i) for k in ks for i in state.pools[k].nodes)


def place_pod(
    state: pools.State, pod: workload.PodRequest, gang_cards: int, queue: list[tuple[int, int, int]]
) -> ledger_.Allocation | None:
    """Put ``pod`` on the first node of ``queue`` where it fits, and re-key that node.

    ``queue`` holds ``(rank, free milli, node)`` sorted ascending: lower rank first, then the
    tightest node. Returns the allocation made on ``state``, or None if no node fits.
    """
    ledger = state.ledger
    need = pod.milli
    for position, (r, free, i) in enumerate(queue):
        if free < need:
            continue
        cards = fit.choose(ledger, i, pod, gang_cards)
        if cards is None:
            continue
        allocation = scoring.allocation(pod, scoring.Placement(i, cards, 0))
        state.allocate(allocation)
        del queue[position]
        bisect.insort(queue, (r, int(ledger.free_milli[i]), i))
        return allocation
    return None


def place_on_pools(
    state: pools.State, gang: workload.Gang, eligible: Iterable[int], *, keep: bool = False
) -> tuple[ledger_.Allocation, ...] | None:
    """A gang that requires one node (or link group), on one node of the ``eligible`` pools.

    Without ``keep`` the placement is only tried: ``state`` is left as it was.
    """
    request = gang.topology
    per_group = request is not None and request.level == workload.LINK_GROUP
    allocations = _on_one_node(state, gang, set(eligible), per_group=per_group)
    if allocations is not None and not keep:
        state.undo(allocations)
    return allocations


def _on_one_node(
    state: pools.State, gang: workload.Gang, eligible: set[int], *, per_group: bool
) -> tuple[ledger_.Allocation, ...] | None:
    """All pods of ``gang`` on one node (and one link group if ``per_group``), tightest node first."""
    ledger = state.ledger
    candidates = sorted((int(ledger.free_milli[i]), i) for k in eligible for i in state.pools[k].nodes)
    need = sum(n * s.request.milli for s, n in zip(gang.pod_sets, gang.lower_bounds(), strict=True))
    for free, i in candidates:
        if free < need:
            continue
        node = ledger.cluster.nodes[i]
        groups = sorted({d.link_group for d in node.devices}) if per_group else [None]
        for group in groups:
            allocations = _fill_node(state, gang, i, None if group is None else {group})
            if allocations is not None:
                return allocations
    return None


def _fill_node(
    state: pools.State, gang: workload.Gang, i: int, within: set[int] | None
) -> tuple[ledger_.Allocation, ...] | None:
    done: list[ledger_.Allocation] = []
    for pod_set, lower in zip(gang.pod_sets, gang.lower_bounds(), strict=True):
        for index in range(pod_set.count):
            pod = gang.pod(pod_set, index)
            cards = fit.choose(state.ledger, i, pod, gang.cards, within=within)
            if cards is None:
                if index >= lower:
                    break
                state.undo(done)
                return None
            allocation = scoring.allocation(pod, scoring.Placement(i, cards, 0))
            state.allocate(allocation)
            done.append(allocation)
    return _whole(state, gang, done)


def _whole(
    state: pools.State, gang: workload.Gang, done: list[ledger_.Allocation]
) -> tuple[ledger_.Allocation, ...] | None:
    """``done`` if it runs at least ``min_member`` pods; otherwise rolled back and None."""
    if len(done) < gang.min_member:  # type: ignore[operator]
        state.undo(done)
        return None
    return tuple(done)
