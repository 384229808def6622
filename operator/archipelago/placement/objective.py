"""What a plan is worth, in the order the scheduler cares: priority, locality, fragmentation.

1. Admitted cards, each weighted by its gang's priority tier. Tier weights are lexicographic:
   one card of a tier outweighs every card of all lower tiers in the batch. With
   ``plan.Queueing.MOST_GANGS`` a gang counts one unit whatever its cards, so the tier's
   admitted gangs are counted instead. With ``plan.Queueing.BEST_EFFORT_FIFO``, queue order
   comes before cards within a tier: the solver keeps the greedy plan's admissions of every
   priority no gang of higher priority waits for (``model.kept``), so cards only decide among
   gangs the queue order leaves out.
2. Domains spanned beyond the first, for gangs with a ``preferred`` topology (at the
   island level when the gang names none).
3. Whole nodes broken: free servers that pods smaller than a server had to start. Keeping
   servers whole is what FGD's fragmentation measure rewards for the 8-card tasks gangs are
   made of; inside a pool the tightest node wins, as in FGD's best case.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from archipelago import workload
from archipelago.cluster import ledger as ledger_
from archipelago.cluster import topology
from archipelago.placement import plan


def by_cards(queueing: plan.Queueing) -> bool:
    """Whether an admitted gang is worth its cards (else one unit, under ``MOST_GANGS``)."""
    return queueing is not plan.Queueing.MOST_GANGS


def units(gang: workload.Gang, queueing: plan.Queueing = plan.Queueing.MOST_CARDS, cards: int | None = None) -> int:
    """Units a gang counts for when admitted: its cards (``cards`` placed, if given; a gang
    without cards counts 1), or 1 under ``MOST_GANGS``."""
    return max(1, gang.cards if cards is None else cards) if by_cards(queueing) else 1


def tier_weights(gangs: Iterable[workload.Gang], queueing: plan.Queueing = plan.Queueing.MOST_CARDS) -> dict[int, int]:
    """Weight per priority value such that one unit of a tier beats all units of lower tiers."""
    totals: dict[int, int] = {}
    for g in gangs:
        totals[g.priority] = totals.get(g.priority, 0) + units(g, queueing)
    weights: dict[int, int] = {}
    below = 0
    for priority in sorted(totals):
        weights[priority] = below + 1
        below += weights[priority] * totals[priority]
    return weights


def preferred_depth(topo: topology.Topology, gang: workload.Gang) -> int | None:
    """The label level whose domains a gang's spread is counted at, or None if not counted."""
    request = gang.topology
    if request is not None:
        if request.required or request.level not in topo.levels:
            return None
        return topo.depth(request.level)
    return len(topo.levels) - 1 if topo.levels else None


@dataclasses.dataclass(frozen=True, order=True)
class Score:
    """A plan's worth; larger is better, compared field by field."""

    value: int
    extra_domains: int
    broken_nodes: int

    def key(self) -> tuple[int, int, int]:
        return (self.value, -self.extra_domains, -self.broken_nodes)


def score(
    before: ledger_.Ledger,
    gangs: Mapping[str, workload.Gang],
    placed: Mapping[str, Sequence[ledger_.Allocation]],
    weights: Mapping[int, int],
    queueing: plan.Queueing = plan.Queueing.MOST_CARDS,
) -> Score:
    """Score ``placed`` (gang name to allocations) against the state ``before`` it, with the
    ``weights`` of ``tier_weights`` for the same ``queueing``."""
    cluster = before.cluster
    value = extra = 0
    used: dict[int, int] = {}
    for name, allocations in placed.items():
        gang = gangs[name]
        value += weights[gang.priority] * units(gang, queueing, sum(len(a.shares) for a in allocations))
        depth = preferred_depth(cluster.topology, gang)
        if depth is not None:
            extra += len({cluster.path(a.node)[: depth + 1] for a in allocations}) - 1
        for a in allocations:
            if a.shares:
                used[a.node] = used.get(a.node, 0) + len(a.shares)
    broken = 0
    for i, cards in used.items():
        capacity = cluster.nodes[i].capacity_milli
        broken += int(before.free_milli[i]) == capacity and cards * 1000 < capacity
    return Score(value, extra, broken)
