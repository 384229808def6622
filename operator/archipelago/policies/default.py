"""Archipelago's default policy: FGD with cpu- and memory-aware fragmentation, a profile that
sees large jobs, link-aware card choice, and ties broken toward keeping whole islands free.

FGD (Weng et al., USENIX ATC '23) asks whether *one* instance of each typical task still fits
a node. A pod that takes 16 of a node's 96 cores then looks harmless while 8 free cards remain,
yet it strands the cards of two 12-core tasks: on the openb trace about 1.2% of all capacity
ends up behind exhausted cpu or memory under FGD. Archipelago's measure also counts *how many*
instances fit, limited by cards, cpu and memory (see ``ResourceFragmentation``).
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Sequence

import numpy as np

from archipelago import workload
from archipelago.cluster import ledger as ledger_
from archipelago.policies import fgd, scoring

DEMAND_COVERAGE = 0.5
"""The profile also holds the largest shapes by card demand that make up half of all demand.

On the openb traces these are already among FGD's most frequent shapes (nothing changes); on
gang-heavy workloads they are the 8-card jobs a count cut drops (see ``workload.typical_tasks``).
"""

SINGLE_WEIGHT = 0.85
"""Weight of FGD's single-instance term against the multi-instance term.

Tuned on seeds 1-6 of the four openb traces (0.7-0.95 all beat FGD; 0.85 was best on average)
and never on the benchmark seeds 42-51.
"""


class ResourceFragmentation(fgd.Fragmentation):
    """F(node) in milli-cards: the free card capacity the typical tasks cannot use.

    For each typical task t (weight p_t, ``cards_t`` cards of ``milli_t``, cpu ``cpu_t``,
    memory ``mem_t``) let k_t be how many instances fit the node at once, limited by cards
    (``sum(f_i // milli_t)`` for one card, ``count(f_i >= milli_t) // cards_t`` for more), by
    cpu (``cpu_free // cpu_t``) and by memory (``memory_free // mem_t``). Then

        F = sum(f) - sum_t p_t * [w * U1_t + (1 - w) * k_t * cards_t * milli_t]

    where ``U1_t`` is FGD's usable capacity (free milli on cards with ``f_i >= milli_t``, when
    at least one instance fits, else 0) and ``w = SINGLE_WEIGHT``. With ``w = 1`` and no memory
    this is FGD's F. Memoised on (model, cpu, memory, sorted free cards).
    """

    def __init__(self, profile: Sequence[workload.TypicalTask], single_weight: float = SINGLE_WEIGHT) -> None:
        super().__init__(profile)
        self.single_weight = single_weight

    def _key(self, model: str | None, cpu_free: int, memory_free: int, ordered: tuple[int, ...]) -> tuple:
        return (model, cpu_free, memory_free, ordered)

    def _compute(self, model: str | None, cpu_free: int, memory_free: int, ordered: tuple[int, ...]) -> float:
        n = len(ordered)
        suffix = fgd.suffix_sums(ordered)
        w = self.single_weight
        usable = 0.0
        for milli, cards, cpu, memory, weight in self._shapes(model):
            first = bisect.bisect_left(ordered, milli)
            if cards == 1:
                fits = sum(f // milli for f in ordered[first:])
            else:
                fits = (n - first) // cards
            if cpu:
                fits = min(fits, cpu_free // cpu)
            if memory:
                fits = min(fits, memory_free // memory)
            if fits > 0:
                usable += weight * (w * suffix[first] + (1 - w) * fits * cards * milli)
        return suffix[0] - usable


class Archipelago(fgd.FGD):
    """The default policy. Scores are FGD's ``trunc(100 * sigmoid(dF / 1000))`` over
    ``ResourceFragmentation``.

    Whole cards come from the link group (NVLink domain, HCCS ring) with the fewest usable
    cards that can hold the pod, which keeps other groups whole; a pod too big for any group
    takes the fullest groups first, so it spans as few as possible. Among equally scored nodes
    the one in the fullest island wins (then the run's rank), which keeps whole islands free
    for gangs.
    """

    name = "archipelago"

    def __init__(self, ledger: ledger_.Ledger, context: scoring.Context) -> None:
        super().__init__(ledger, context)
        self.island, self.island_capacity = _islands(ledger)

    @classmethod
    def profile(cls, requests: Sequence[workload.PodRequest]) -> tuple[workload.TypicalTask, ...]:
        return workload.typical_tasks(requests, demand_coverage=DEMAND_COVERAGE)

    def measure(self, profile: Sequence[workload.TypicalTask]) -> ResourceFragmentation:
        return ResourceFragmentation(profile)

    def whole_cards(self, i: int, usable: list[int], count: int) -> tuple[int, ...]:
        node_devices = self.nodes[i].devices
        groups: dict[int, list[int]] = collections.defaultdict(list)
        for j in usable:
            groups[node_devices[j].link_group].append(j)
        if len(groups) == 1:
            return tuple(usable[:count])
        fitting = [cards for cards in groups.values() if len(cards) >= count]
        if fitting:
            return tuple(min(fitting, key=len)[:count])
        chosen: list[int] = []
        for cards in sorted(groups.values(), key=len, reverse=True):
            chosen.extend(cards[: count - len(chosen)])
            if len(chosen) == count:
                break
        return tuple(sorted(chosen))

    def tie_break(self, candidates: np.ndarray, pod: workload.PodRequest) -> int:
        if self.island is None:
            return super().tie_break(candidates, pod)
        free = np.bincount(self.island, weights=self.ledger.free_milli, minlength=len(self.island_capacity))
        islands = self.island[candidates]
        capacity = self.island_capacity[islands]
        share_free = np.divide(free[islands], capacity, out=np.ones(len(candidates)), where=capacity > 0)
        fullest = candidates[share_free == share_free.min()]
        return super().tie_break(fullest, pod)


def _islands(ledger: ledger_.Ledger) -> tuple[np.ndarray | None, np.ndarray]:
    """Island index of every node (finest label level) and each island's capacity in milli.

    ``None`` when no island holds two nodes: then there is nothing to keep whole.
    """
    cluster = ledger.cluster
    if not cluster.topology.levels:
        return None, np.zeros(0)
    domains = cluster.domains(cluster.topology.levels[-1])
    if all(len(members) == 1 for members in domains.values()):
        return None, np.zeros(0)
    island = np.empty(len(cluster), dtype=np.int64)
    capacity = np.zeros(len(domains))
    for k, members in enumerate(domains.values()):
        island[members] = k
        capacity[k] = sum(cluster.nodes[i].capacity_milli for i in members)
    return island, capacity
