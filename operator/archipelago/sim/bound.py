"""An upper bound on how much of a cluster's cards a set of pods can be given.

The bound answers: whatever the placement policy and whatever the arrival order, at most how
many milli-cards (1000 = one whole card) can ``pods`` hold on ``cluster``? It is the linear
relaxation of card-level packing, so an online policy's allocation can be read against it.

The relaxation drops cpu, memory and node boundaries; it keeps card models. Cards are pooled by
(model, resource); only healthy cards count. Exclusive pods (1000 milli per card) take whole
cards of an allowed pool. Sharing pods pack into the remaining cards, which makes the problem a
cutting-stock LP (Gilmore & Gomory, "A Linear Programming Approach to the Cutting-Stock
Problem", Operations Research 9(6), 1961): a column is a *pattern*, a multiset of sharing pods
that fits on one card, and the LP chooses how many cards to fill with each pattern. Patterns
are generated on demand by column generation, each pricing step an integer knapsack over the
1000 milli of one card.

This is the "physical limit" quoted for the FGD evaluation (Weng et al., "Beware of
Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX
ATC '23) in ``shared/traces/README.md``.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Sequence

import numpy as np
from ortools.linear_solver import pywraplp

from archipelago import cluster as cluster_
from archipelago import workload
from archipelago.cluster import devices

_CARD = devices.MILLI_PER_CARD
_TOLERANCE = 1e-9 * _CARD
"""Reduced costs (milli-cards) at or below this are taken as zero."""


@dataclasses.dataclass(frozen=True)
class Bound:
    """The allocation bound and what computing it took.

    ``milli`` is the most milli-cards any placement could allocate to the pods; ``pct`` is the
    same as a percentage of the cluster's healthy capacity. ``columns`` counts the pattern
    columns of the final LP (the single-pod starting patterns included) and ``iterations`` the
    LP solves. ``converged`` is False when the time limit stopped column generation early;
    ``milli`` is then the Lagrangian bound of the last LP, still a valid upper bound but looser.
    """

    milli: float
    pct: float
    columns: int
    iterations: int
    converged: bool = True


@dataclasses.dataclass(frozen=True)
class _Type:
    """Pods the bound cannot tell apart, usable on the pools indexed by ``pools``.

    Exclusive (``milli`` 1000): ``count`` pods of ``cards`` whole cards each. Sharing: ``count``
    items of ``milli`` milli-cards, each on one card (``cards`` is 1).
    """

    milli: int
    cards: int
    pools: tuple[int, ...]
    count: int

    @property
    def exclusive(self) -> bool:
        return self.milli == _CARD


@dataclasses.dataclass(frozen=True)
class _Pool:
    """The healthy cards of one (model, resource): ``cards`` in all, ``widest`` on one node."""

    model: str
    resource: str
    cards: int
    widest: int


def allocation_bound(
    cluster: cluster_.Cluster,
    pods: Sequence[workload.PodRequest],
    *,
    time_limit_s: float = 30.0,
) -> Bound:
    """The most milli-cards any placement, in any order, could allocate to ``pods``.

    A pod may use a pool when its ``models`` allow the model (empty: any), its ``resource``
    matches (``None``: any) and some node of the pool has ``cards`` healthy cards. Pods without
    cards add nothing. A multi-card pod with less than 1000 milli per card is counted as
    ``cards`` independent sharing pods of that milli: it still needs that much on ``cards``
    distinct cards, so the relaxation stays valid. The result is also capped by the capacity and
    by the demand of pods that fit somewhere, both of which are bounds themselves.

    ``time_limit_s`` bounds the whole computation; if it runs out, the bound is the Lagrangian
    bound of the last restricted LP (see ``Bound.converged``).
    """
    deadline = time.monotonic() + time_limit_s
    pools = _pools(cluster)
    capacity = sum(p.cards for p in pools) * _CARD
    types = _types(pools, pods)
    placeable = sum(t.milli * t.cards * t.count for t in types)
    master = _Master(pools, types)
    iterations = 0
    converged = False
    lagrangian = math.inf
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not master.solve(remaining):
            break
        iterations += 1
        gain = 0.0
        added = False
        for m in range(len(pools)):
            pattern, reduced = master.price(m)
            gain += pools[m].cards * max(0.0, reduced)
            if reduced > _TOLERANCE and master.add(m, pattern):
                added = True
        lagrangian = min(lagrangian, master.objective + gain)
        if not added:
            converged = True
            break
    milli = master.objective if converged else lagrangian
    milli = float(max(0.0, min(milli, capacity, placeable)))
    pct = milli / capacity * 100 if capacity else 0.0
    return Bound(milli, pct, master.columns, iterations, converged)


def _pools(cluster: cluster_.Cluster) -> list[_Pool]:
    cards: dict[tuple[str, str], int] = collections.Counter()
    widest: dict[tuple[str, str], int] = collections.Counter()
    for node in cluster.nodes:
        healthy = collections.Counter((d.model, d.resource) for d in node.devices if d.healthy)
        for key, n in healthy.items():
            cards[key] += n
            widest[key] = max(widest[key], n)
    return [
        _Pool(model, resource, cards[model, resource], widest[model, resource]) for model, resource in sorted(cards)
    ]


def _types(pools: Sequence[_Pool], pods: Sequence[workload.PodRequest]) -> list[_Type]:
    """Pods grouped into types, each with the pools it may use; pods that fit nowhere are dropped."""
    counts: dict[tuple[int, int, tuple[int, ...]], int] = collections.Counter()
    for pod in pods:
        if pod.cards == 0:
            continue
        allowed = tuple(
            i
            for i, pool in enumerate(pools)
            if (not pod.models or pool.model in pod.models)
            and (pod.resource is None or pool.resource == pod.resource)
            and pool.widest >= pod.cards
        )
        if not allowed:
            continue
        if pod.milli_per_card == _CARD:
            counts[_CARD, pod.cards, allowed] += 1
        else:  # sharing, or the rare multi-card sharing pod split into one item per card
            counts[pod.milli_per_card, 1, allowed] += pod.cards
    return [_Type(milli, cards, allowed, n) for (milli, cards, allowed), n in sorted(counts.items())]


class _Master:
    """The restricted master LP of column generation, on GLOP.

    Rows: for each type, pods placed <= count; for each pool, cards used <= cards. Columns:
    x[type, pool] for exclusive types, z[pool, pattern] for sharing patterns.
    """

    def __init__(self, pools: Sequence[_Pool], types: Sequence[_Type]) -> None:
        self.pools = pools
        self.types = types
        self.sharing = [k for k, t in enumerate(types) if not t.exclusive]
        self.solver = pywraplp.Solver.CreateSolver("GLOP")
        if self.solver is None:
            raise RuntimeError("OR-Tools has no GLOP solver")
        infinity = self.solver.infinity()
        self.type_rows = [self.solver.Constraint(-infinity, t.count) for t in types]
        self.pool_rows = [self.solver.Constraint(-infinity, p.cards) for p in pools]
        self.objective_ = self.solver.Objective()
        self.objective_.SetMaximization()
        self.patterns: list[set[tuple[tuple[int, int], ...]]] = [set() for _ in pools]
        self.objective = 0.0
        for k, t in enumerate(types):
            for m in t.pools:
                if t.exclusive:
                    x = self.solver.NumVar(0.0, infinity, f"x_{k}_{m}")
                    self.type_rows[k].SetCoefficient(x, 1)
                    self.pool_rows[m].SetCoefficient(x, t.cards)
                    self.objective_.SetCoefficient(x, t.cards * _CARD)
                else:
                    self.add(m, ((k, 1),))

    @property
    def columns(self) -> int:
        return sum(len(p) for p in self.patterns)

    def add(self, m: int, pattern: tuple[tuple[int, int], ...]) -> bool:
        """Add ``pattern`` (pairs of type index and multiplicity) on pool ``m``; False if known."""
        if not pattern or pattern in self.patterns[m]:
            return False
        self.patterns[m].add(pattern)
        z = self.solver.NumVar(0.0, self.solver.infinity(), f"z_{m}_{len(self.patterns[m])}")
        self.pool_rows[m].SetCoefficient(z, 1)
        for k, n in pattern:
            self.type_rows[k].SetCoefficient(z, n)
        self.objective_.SetCoefficient(z, sum(self.types[k].milli * n for k, n in pattern))
        return True

    def solve(self, time_limit_s: float) -> bool:
        self.solver.SetTimeLimit(max(1, int(time_limit_s * 1000)))
        status = self.solver.Solve()
        if status != pywraplp.Solver.OPTIMAL:
            return False
        self.objective = self.objective_.Value()
        self.type_duals = [max(0.0, row.dual_value()) for row in self.type_rows]
        self.pool_duals = [max(0.0, row.dual_value()) for row in self.pool_rows]
        return True

    def price(self, m: int) -> tuple[tuple[tuple[int, int], ...], float]:
        """The pattern on pool ``m`` with the largest reduced cost, and that reduced cost.

        A bounded integer knapsack over one card's 1000 milli: an item of type ``k`` weighs its
        milli and is worth its milli less the dual of the type's count row; it may be taken at
        most ``count`` times. The pool row's dual is the card's price.
        """
        items = [
            (k, self.types[k].milli, self.types[k].milli - self.type_duals[k], self.types[k].count)
            for k in self.sharing
            if m in self.types[k].pools
        ]
        pattern, value = _knapsack(_CARD, [(w, v, min(n, _CARD // w)) for _, w, v, n in items])
        chosen = tuple((items[i][0], n) for i, n in enumerate(pattern) if n)
        return chosen, value - self.pool_duals[m]


def _knapsack(capacity: int, items: Sequence[tuple[int, float, int]]) -> tuple[list[int], float]:
    """Best multiplicities for items (weight, value, at most n) within ``capacity``, and the value.

    Binary splitting turns each bounded item into 0/1 chunks of 1, 2, 4, ... copies; the 0/1
    knapsack over them is vectorised over capacities. Items of no positive value are skipped.
    """
    chunks: list[tuple[int, int]] = []  # (item, copies)
    for i, (_, value, n) in enumerate(items):
        if value <= 0:
            continue
        step = 1
        while n > 0:
            take = min(step, n)
            chunks.append((i, take))
            n -= take
            step *= 2
    best = np.zeros(capacity + 1)
    taken = np.zeros((len(chunks), capacity + 1), dtype=bool)
    for c, (i, copies) in enumerate(chunks):
        weight, value = items[i][0] * copies, items[i][1] * copies
        if weight > capacity:
            continue
        candidate = best[:-weight] + value
        better = candidate > best[weight:]
        taken[c, weight:] = better
        best[weight:] = np.where(better, candidate, best[weight:])
    counts = [0] * len(items)
    room = capacity
    for c in range(len(chunks) - 1, -1, -1):
        if taken[c, room]:
            i, copies = chunks[c]
            counts[i] += copies
            room -= items[i][0] * copies
    return counts, float(best[capacity])
