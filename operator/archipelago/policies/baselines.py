"""The comparison policies of the FGD paper (USENIX ATC '23, section 5.1), in their trace form.

Each scores a node with an integer 0..100, as the paper's simulator does
(``hkust-adsl/kubernetes-scheduler-simulator``); formulas are from
``../shared/traces/README.md`` and the paper. Unless stated otherwise an exclusive pod takes
the lowest-numbered free cards and a sharing pod the fitting card with the least free milli.
"""

from __future__ import annotations

import numpy as np

from archipelago import workload
from archipelago.cluster import devices
from archipelago.cluster import ledger as ledger_
from archipelago.policies import scoring

MAX_SPEC_CPU = 128_000
"""Normalisation constant of the paper's simulator, milli-cores (a 128-core node)."""
MAX_SPEC_CARDS = 8 * devices.MILLI_PER_CARD
"""Normalisation constant of the paper's simulator, milli-cards (an 8-card node)."""


def default_cards(free: list[int], usable: list[int], pod: workload.PodRequest) -> tuple[int, ...]:
    if pod.sharing:
        return (scoring.tightest(free, usable),)
    return tuple(usable[: pod.cards])


def clamp(score: float) -> int:
    return max(0, min(100, int(score)))


class BestFit(scoring.Policy):
    """Least leftover cpu and card capacity, equally weighted.

    ``trunc(100 * (1 - 0.5 * (cpu_free - cpu) / 128000 - 0.5 * (milli_free - milli) / 8000))``
    with node-total milli-cards.
    """

    name = "bestfit"

    def evaluate(self, i: int, pod: workload.PodRequest) -> scoring.Evaluation | None:
        usable = scoring.usable_cards(self.ledger, i, pod)
        if usable is None:
            return None
        free = self.ledger.card_free[i]
        left_cpu = self.ledger.cpu_free[i] - pod.cpu_milli
        left_milli = sum(free) - pod.milli
        score = clamp(100 * (1 - 0.5 * left_cpu / MAX_SPEC_CPU - 0.5 * left_milli / MAX_SPEC_CARDS))
        return score, default_cards(free, usable, pod)


class GpuPacking(scoring.Policy):
    """Fill partly used cards first, then partly used nodes, then empty nodes.

    Using only partly used cards scores ``max(100 - sum(free % of those cards) / 10, 50)``;
    opening fully free cards on a used node scores ``max(50 - cards opened, 33)``; an empty
    node of G healthy cards scores ``max(33 - G, G)``. Cpu-only pods score 0 everywhere. Cards
    are taken least-free first (whole-card pods: lowest-numbered, which is the same set).
    """

    name = "gpupacking"

    def evaluate(self, i: int, pod: workload.PodRequest) -> scoring.Evaluation | None:
        usable = scoring.usable_cards(self.ledger, i, pod)
        if usable is None:
            return None
        if not pod.cards:
            return 0, ()
        free = self.ledger.card_free[i]
        by_free = sorted(usable, key=free.__getitem__)[: pod.cards]
        whole = devices.MILLI_PER_CARD
        cards = usable[: pod.cards] if pod.milli_per_card == whole else by_free
        healthy = [f for f, d in zip(free, self.nodes[i].devices, strict=True) if d.healthy]
        if all(f == whole for f in healthy):
            return max(33 - len(healthy), len(healthy)), tuple(cards)
        opened = sum(1 for j in by_free if free[j] == whole)
        if opened:
            return max(50 - opened, 33), tuple(cards)
        free_pct = sum(free[j] * 100 // whole for j in by_free)
        return max(100 - free_pct // 10, 50), tuple(cards)


class DotProduct(scoring.Policy):
    """Tetris-style alignment (Grandl et al., SIGCOMM '14), in the paper simulator's form.

    Node free vector and pod request vector over (cpu, milli-cards), each normalised by the
    simulator's maximum node (128 cores, 8 cards); score ``trunc(100 * (1 - dot / 2))``, so the
    node whose free resources align least with the request (the fuller node) wins.
    """

    name = "dotprod"

    def evaluate(self, i: int, pod: workload.PodRequest) -> scoring.Evaluation | None:
        usable = scoring.usable_cards(self.ledger, i, pod)
        if usable is None:
            return None
        free = self.ledger.card_free[i]
        dot = (self.ledger.cpu_free[i] / MAX_SPEC_CPU) * (pod.cpu_milli / MAX_SPEC_CPU) + (
            sum(free) / MAX_SPEC_CARDS
        ) * (pod.milli / MAX_SPEC_CARDS)
        return clamp(100 * (1 - dot / 2)), default_cards(free, usable, pod)


class GpuClustering(scoring.Policy):
    """Keep pods of one card shape together (the paper's "GPU Clustering" baseline).

    A pod's affinity is the simulator's tag: every sharing pod alike, whole-card pods by card
    count, cpu-only pods none. Bands: node whose only affinity is the
    pod's, 75..100; node holding it among others, 50..75; node with no card pods, 25..50; any
    other node, 0..25. Inside a band, fuller nodes score higher:
    ``25 * (8000 - node free milli) / 8000``. Cpu-only pods score 0.
    """

    name = "gpuclustering"

    def evaluate(self, i: int, pod: workload.PodRequest) -> scoring.Evaluation | None:
        usable = scoring.usable_cards(self.ledger, i, pod)
        if usable is None:
            return None
        if not pod.cards:
            return 0, ()
        free = self.ledger.card_free[i]
        affinities = {_affinity(len(a.shares), a.shares[0].milli if a.shares else 0) for a in self.ledger.on_node(i)}
        affinities.discard(None)
        fullness = max(0, 25 * (MAX_SPEC_CARDS - sum(free)) // MAX_SPEC_CARDS)
        if _affinity(pod.cards, pod.milli_per_card) in affinities:
            band = 75 if len(affinities) == 1 else 50
        else:
            band = 25 if not affinities else 0
        return band + fullness, default_cards(free, usable, pod)


def _affinity(cards: int, milli: int) -> str | None:
    """The simulator's affinity tag: all sharing pods alike, whole-card pods by card count."""
    if cards == 0:
        return None
    return "share" if cards == 1 and milli < devices.MILLI_PER_CARD else f"{cards}-card"


class Random(scoring.Policy):
    """A uniformly random feasible node, as the paper's simulator draws it."""

    name = "random"

    def __init__(self, ledger: ledger_.Ledger, context: scoring.Context) -> None:
        super().__init__(ledger, context)
        self.rng = scoring.seeded(context, self.name)

    def evaluate(self, i: int, pod: workload.PodRequest) -> scoring.Evaluation | None:
        usable = scoring.usable_cards(self.ledger, i, pod)
        if usable is None:
            return None
        return 0, default_cards(self.ledger.card_free[i], usable, pod)

    def tie_break(self, candidates: np.ndarray, pod: workload.PodRequest) -> int:
        return int(candidates[self.rng.randrange(len(candidates))])
