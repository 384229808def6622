"""The engine behind every placement policy: feasibility, card choice and the score tables.

A policy scores one node at a time, from that node's own state (``evaluate``). The engine
keeps one score per node for every distinct pod shape and re-scores only the nodes whose
ledger generation moved since that shape was last placed. A decision is then a vector max
instead of a pass over the cluster in Python: about 10^3 fewer evaluations per pod on the
1,213-node openb trace.
"""

from __future__ import annotations

import abc
import dataclasses
import random
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from archipelago import workload
from archipelago.cluster import ledger as ledger_
from archipelago.cluster import nodes

Evaluation = tuple[int, tuple[int, ...]]
"""A node's integer score for a pod, and the cards the pod would take there."""

INFEASIBLE = -(2**62)


@dataclasses.dataclass(frozen=True, slots=True)
class Placement:
    """Where a pod goes: node index, card indices, and the winning score."""

    node: int
    cards: tuple[int, ...]
    score: int


@dataclasses.dataclass(frozen=True)
class Context:
    """Per-run inputs of a policy.

    ``profile``: the typical tasks of the workload (FGD's target workload). ``rank``: the
    position of every node in the tie-break order (lower wins); ``None`` means node order.
    ``seed`` seeds any randomness the policy draws.
    """

    profile: tuple[workload.TypicalTask, ...] = ()
    rank: np.ndarray | None = None
    seed: int = 0


class Policy(abc.ABC):
    """Chooses a node and cards for one pod at a time. Never mutates the ledger."""

    name: ClassVar[str]

    def __init__(self, ledger: ledger_.Ledger, context: Context) -> None:
        self.ledger = ledger
        self.context = context
        self.nodes = ledger.cluster.nodes
        n = len(self.nodes)
        self.rank = np.arange(n) if context.rank is None else np.asarray(context.rank)
        if self.rank.shape != (n,):
            raise ValueError(f"tie-break rank must have one entry per node ({n}), got {self.rank.shape}")
        self._tables: dict[tuple, _Table] = {}

    @classmethod
    def profile(cls, requests: Sequence[workload.PodRequest]) -> tuple[workload.TypicalTask, ...]:
        """The typical tasks this policy reads from a workload sample: FGD's 95% count cut."""
        return workload.typical_tasks(requests)

    @abc.abstractmethod
    def evaluate(self, i: int, pod: workload.PodRequest) -> Evaluation | None:
        """Node ``i``'s score for ``pod`` and the cards it would take, or None if it does not fit.

        Must depend only on node ``i``'s own state, so that cached scores stay valid until
        that node changes.
        """

    def place(self, pod: workload.PodRequest) -> Placement | None:
        """The best node for ``pod`` (highest score; ties by rank), or None if nothing fits."""
        scores = self.scores(pod)
        best = int(scores.max()) if len(scores) else INFEASIBLE
        if best == INFEASIBLE:
            return None
        candidates = np.flatnonzero(scores == best)
        winner = int(candidates[0]) if len(candidates) == 1 else self.tie_break(candidates, pod)
        evaluation = self.evaluate(winner, pod)
        assert evaluation is not None and evaluation[0] == best, "evaluate() must depend only on its node"
        return Placement(winner, evaluation[1], best)

    def tie_break(self, candidates: np.ndarray, pod: workload.PodRequest) -> int:
        """Among equally scored nodes, the first in the run's rank order."""
        return int(candidates[np.argmin(self.rank[candidates])])

    def scores(self, pod: workload.PodRequest) -> np.ndarray:
        """Every node's current score for ``pod`` (``INFEASIBLE`` where it does not fit)."""
        table = self._tables.get(pod.fit_key)
        if table is None:
            table = self._tables[pod.fit_key] = _Table(len(self.nodes))
            stale = range(len(self.nodes))
        else:
            stale = np.flatnonzero(self.ledger.node_generation > table.synced).tolist()
        values = table.scores
        for i in stale:
            evaluation = self.evaluate(i, pod)
            values[i] = INFEASIBLE if evaluation is None else evaluation[0]
        table.synced = self.ledger.generation
        return values


class _Table:
    __slots__ = ("scores", "synced")

    def __init__(self, n: int) -> None:
        self.scores = np.full(n, INFEASIBLE, dtype=np.int64)
        self.synced = -1


def eligible(node: nodes.Node, pod: workload.PodRequest) -> bool:
    """Static fit: card model and resource, node selector, avoided nodes and taints."""
    if pod.avoid_nodes and node.name in pod.avoid_nodes:
        return False
    if pod.cards:
        if not node.devices:
            return False
        if pod.models and node.model not in pod.models:
            return False
        if pod.resource is not None and node.devices[0].resource != pod.resource:
            return False
    if pod.node_selector and not nodes.selected(node.labels, pod.node_selector):
        return False
    return not node.taints or nodes.tolerated(node.taints, pod.tolerations)


def usable_cards(ledger: ledger_.Ledger, i: int, pod: workload.PodRequest) -> list[int] | None:
    """Cards of node ``i`` that can take one of ``pod``'s shares, or None if the pod does not fit.

    Checks everything: eligibility, cpu, memory, and enough cards with ``milli_per_card`` and
    ``device_memory_mib`` free.
    """
    if ledger.cpu_free[i] < pod.cpu_milli or ledger.memory_free[i] < pod.memory_mib:
        return None
    if not eligible(ledger.cluster.nodes[i], pod):
        return None
    if not pod.cards:
        return []
    milli, memory = pod.milli_per_card, pod.device_memory_mib
    free = ledger.card_free[i]
    if memory:
        mem_free = ledger.card_memory_free[i]
        usable = [j for j, f in enumerate(free) if f >= milli and mem_free[j] >= memory]
    else:
        usable = [j for j, f in enumerate(free) if f >= milli]
    return usable if len(usable) >= pod.cards else None


def tightest(free: list[int], usable: list[int]) -> int:
    """The usable card with the least free milli; ties go to the lowest index."""
    return min(usable, key=free.__getitem__)


def allocation(pod: workload.PodRequest, placement: Placement) -> ledger_.Allocation:
    """The ledger entry that carries out ``placement`` for ``pod``."""
    return ledger_.Allocation(
        pod=pod.name,
        node=placement.node,
        cpu_milli=pod.cpu_milli,
        memory_mib=pod.memory_mib,
        shares=tuple(ledger_.CardShare(card, pod.milli_per_card, pod.device_memory_mib) for card in placement.cards),
    )


def seeded(context: Context, salt: str) -> random.Random:
    """A generator private to one policy instance, reproducible from the run's seed."""
    return random.Random(f"{context.seed}:{salt}")
