"""Fragmentation Gradient Descent (FGD).

Weng, Yang, Yu, Wang, Tang, Yang and Zhang, "Beware of Fragmentation: Scheduling GPU-Sharing
Workloads with Fragmentation Gradient Descent", USENIX ATC '23. Section numbers below refer
to that paper; the evaluation protocol is the one in ``../shared/traces/README.md``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from archipelago import workload
from archipelago.cluster import ledger as ledger_
from archipelago.policies import scoring


class Fragmentation:
    """F(node): the milli-cards of a node that the typical tasks cannot use (section 3.2).

    For free cards ``f_1..f_G``, free cpu ``c`` and model ``M``, F = sum over typical tasks t
    of ``p_t * A_t``, where ``A_t`` is the free milli on cards with ``f_i < milli_t`` if t fits
    the node (enough such cards with ``f_i >= milli_t``, enough cpu, model allowed) and all
    free milli otherwise. Because the weights sum to 1, this equals
    ``sum(f) - sum over fitting t of p_t * (free milli on cards with f_i >= milli_t)``.

    Results are memoised on (model, cpu, sorted free cards); units are milli-cards. Subclasses
    change the formula (``_compute``) and what the memo tells apart (``_key``).
    """

    def __init__(self, profile: Sequence[workload.TypicalTask]) -> None:
        self.profile = tuple(profile)
        self._per_model: dict[str | None, tuple[Shape, ...]] = {}
        self._memo: dict[tuple, float] = {}

    def _shapes(self, model: str | None) -> tuple[Shape, ...]:
        """The card-using typical tasks allowed on ``model``, as plain tuples for speed."""
        shapes = self._per_model.get(model)
        if shapes is None:
            shapes = tuple(
                (t.milli_per_card, t.cards, t.cpu_milli, t.memory_mib, t.weight)
                for t in self.profile
                if t.cards and t.runs_on(model)
            )
            self._per_model[model] = shapes
        return shapes

    def of(self, model: str | None, cpu_free: int, memory_free: int, card_free: Sequence[int]) -> float:
        ordered = tuple(sorted(card_free))
        key = self._key(model, cpu_free, memory_free, ordered)
        value = self._memo.get(key)
        if value is None:
            value = self._memo[key] = self._compute(model, cpu_free, memory_free, ordered)
        return value

    def _key(self, model: str | None, cpu_free: int, memory_free: int, ordered: tuple[int, ...]) -> tuple:
        return (model, cpu_free, ordered)  # FGD ignores memory

    def _compute(self, model: str | None, cpu_free: int, memory_free: int, ordered: tuple[int, ...]) -> float:
        n = len(ordered)
        suffix = suffix_sums(ordered)
        usable = 0.0
        for milli, cards, cpu, _memory, weight in self._shapes(model):
            if cpu_free < cpu:
                continue
            k = bisect.bisect_left(ordered, milli)
            if n - k >= cards:
                usable += weight * suffix[k]
        return suffix[0] - usable


Shape = tuple[int, int, int, int, float]
"""A typical task as (milli per card, cards, cpu milli, memory MiB, weight)."""


def suffix_sums(ordered: Sequence[int]) -> list[int]:
    """``suffix[k] = sum(ordered[k:])``: the free milli on the cards at or above a threshold."""
    suffix = [0] * (len(ordered) + 1)
    for k in range(len(ordered) - 1, -1, -1):
        suffix[k] = suffix[k + 1] + ordered[k]
    return suffix


def sigmoid_score(before: float, after: float) -> int:
    """FGD's node score: ``trunc(100 * sigmoid((F_before - F_after) / 1000))``, 0..100.

    The truncation to integer levels is part of the published protocol: exact float scores
    give about 94.2% allocation on the default trace instead of 95.23%.
    """
    return int(100.0 / (1.0 + math.exp(-(before - after) / 1000.0)))


class FGD(scoring.Policy):
    """Place each task where it grows fragmentation least (section 4).

    Exclusive tasks take the lowest-numbered free cards; a sharing task takes the card that
    leaves the node least fragmented (ties to the lowest index). Subclasses change the
    measure (``measure``) and the choice of whole cards (``whole_cards``).
    """

    name = "fgd"

    def __init__(self, ledger: ledger_.Ledger, context: scoring.Context) -> None:
        super().__init__(ledger, context)
        if not context.profile:
            raise ValueError(f"{self.name} needs the workload's typical tasks (Context.profile)")
        self.fragmentation = self.measure(context.profile)

    def measure(self, profile: Sequence[workload.TypicalTask]) -> Fragmentation:
        return Fragmentation(profile)

    def whole_cards(self, i: int, usable: list[int], count: int) -> tuple[int, ...]:
        """The cards an exclusive pod takes on node ``i``: the lowest-numbered usable ones."""
        return tuple(usable[:count])

    def evaluate(self, i: int, pod: workload.PodRequest) -> scoring.Evaluation | None:
        usable = scoring.usable_cards(self.ledger, i, pod)
        if usable is None:
            return None
        model = self.nodes[i].model
        cpu, memory = self.ledger.cpu_free[i], self.ledger.memory_free[i]
        free = self.ledger.card_free[i]
        before = self.fragmentation.of(model, cpu, memory, free)
        after, chosen = self.least_fragmenting(i, cpu - pod.cpu_milli, memory - pod.memory_mib, usable, pod)
        return sigmoid_score(before, after), chosen

    def least_fragmenting(
        self, i: int, cpu_after: int, memory_after: int, usable: list[int], pod: workload.PodRequest
    ) -> tuple[float, tuple[int, ...]]:
        """F of node ``i`` after placing ``pod``, and the cards that achieve it."""
        model = self.nodes[i].model
        free = self.ledger.card_free[i]
        if pod.sharing:
            best: tuple[float, int] | None = None
            tried: set[int] = set()
            for j in usable:
                if free[j] in tried:  # equal free milli leaves an equal node: keep the lower index
                    continue
                tried.add(free[j])
                trial = free.copy()
                trial[j] -= pod.milli_per_card
                value = self.fragmentation.of(model, cpu_after, memory_after, trial)
                if best is None or value < best[0]:
                    best = (value, j)
            assert best is not None
            return best[0], (best[1],)
        chosen = self.whole_cards(i, usable, pod.cards) if pod.cards else ()
        trial = free.copy()
        for j in chosen:
            trial[j] -= pod.milli_per_card
        return self.fragmentation.of(model, cpu_after, memory_after, trial), chosen


def fragmented_milli(ledger: ledger_.Ledger, fragmentation: Fragmentation) -> float:
    """Cluster-wide FGD fragmentation of the ledger's current state, in milli-cards."""
    nodes = ledger.cluster.nodes
    return sum(
        fragmentation.of(nodes[i].model, ledger.cpu_free[i], ledger.memory_free[i], ledger.card_free[i])
        for i in range(len(nodes))
        if nodes[i].devices
    )
