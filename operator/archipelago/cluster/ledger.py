"""The allocation ledger: exact free capacity of every node and card.

Units: cpu in milli-cores, memory and device memory in MiB, card shares in milli-cards.

The ledger is the only mutable state of the scheduling core. ``allocate`` checks every limit
before it changes anything, so a refused allocation leaves the ledger untouched and no call
order can over-commit a node or a card. Both operations cost O(cards of the pod).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from archipelago import cluster as cluster_
from archipelago.cluster import devices


@dataclasses.dataclass(frozen=True, slots=True)
class CardShare:
    """Part of one card held by a pod: ``milli`` of 1000, and ``memory_mib`` of device memory."""

    card: int
    milli: int
    memory_mib: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Allocation:
    """Everything one pod holds on one node."""

    pod: str
    node: int
    cpu_milli: int = 0
    memory_mib: int = 0
    shares: tuple[CardShare, ...] = ()

    @property
    def milli(self) -> int:
        """Total milli-cards held, summed over cards."""
        return sum(s.milli for s in self.shares)


class CapacityError(ValueError):
    """An allocation that would over-commit, or that names a node or card that does not exist."""


class Ledger:
    """Free capacity per node and per card, and the allocations that consumed it.

    Unhealthy cards have no capacity. ``free_milli[i]`` is node ``i``'s free card capacity in
    milli-cards (a numpy vector, for aggregates over islands). ``generation`` counts changes
    and ``node_generation[i]`` records the generation of node ``i``'s last change, so callers
    can cache per-node results and refresh only the nodes that changed.
    """

    def __init__(self, cluster: cluster_.Cluster) -> None:
        self.cluster = cluster
        nodes = cluster.nodes
        self.cpu_free: list[int] = [n.cpu_milli for n in nodes]
        self.memory_free: list[int] = [n.memory_mib for n in nodes]
        self.card_free: list[list[int]] = [
            [devices.MILLI_PER_CARD if d.healthy else 0 for d in n.devices] for n in nodes
        ]
        self.card_memory_free: list[list[int]] = [[d.memory_mib if d.healthy else 0 for d in n.devices] for n in nodes]
        self.free_milli = np.array([sum(c) for c in self.card_free], dtype=np.int64)
        self.capacity_milli = int(self.free_milli.sum())
        self.allocated_milli = 0
        self.generation = 0
        self.node_generation = np.zeros(len(nodes), dtype=np.int64)
        self._allocations: dict[str, Allocation] = {}
        self._on_node: list[dict[str, Allocation]] = [{} for _ in nodes]
        self._owned = bytearray(b"\x01") * len(nodes)
        """Per node, 1 once this ledger holds its own copy of the node's per-card lists and
        allocations; 0 while it may share them with copies (copy-on-write)."""

    def copy(self) -> Ledger:
        """An independent ledger with the same allocations (for trying a plan without committing it).

        O(nodes) at C speed: the per-node card lists are shared until either ledger changes
        that node, which then copies them first (copy-on-write).
        """
        other = object.__new__(Ledger)
        other.cluster = self.cluster
        other.cpu_free = list(self.cpu_free)
        other.memory_free = list(self.memory_free)
        other.card_free = list(self.card_free)
        other.card_memory_free = list(self.card_memory_free)
        other.free_milli = self.free_milli.copy()
        other.capacity_milli = self.capacity_milli
        other.allocated_milli = self.allocated_milli
        other.generation = self.generation
        other.node_generation = self.node_generation.copy()
        other._allocations = dict(self._allocations)
        other._on_node = list(self._on_node)
        self._owned = bytearray(len(self._owned))  # both now share every node's lists
        other._owned = bytearray(len(self._owned))
        return other

    def _own(self, i: int) -> None:
        """Copy node ``i``'s lists before this ledger first changes them (see ``copy``)."""
        if not self._owned[i]:
            self.card_free[i] = list(self.card_free[i])
            self.card_memory_free[i] = list(self.card_memory_free[i])
            self._on_node[i] = dict(self._on_node[i])
            self._owned[i] = 1

    def __contains__(self, pod: str) -> bool:
        return pod in self._allocations

    def __len__(self) -> int:
        return len(self._allocations)

    def get(self, pod: str) -> Allocation | None:
        return self._allocations.get(pod)

    def allocations(self) -> Iterator[Allocation]:
        return iter(self._allocations.values())

    def on_node(self, node: int) -> list[Allocation]:
        """The allocations held on node ``node``, oldest first."""
        return list(self._on_node[node].values())

    def check(self, a: Allocation) -> None:
        """Raise ``CapacityError`` unless ``a`` fits the current free capacity exactly."""
        if a.pod in self._allocations:
            raise CapacityError(f"pod {a.pod} already holds an allocation")
        if not 0 <= a.node < len(self.cpu_free):
            raise CapacityError(f"pod {a.pod}: node index {a.node} does not exist")
        if a.cpu_milli < 0 or a.memory_mib < 0:
            raise CapacityError(f"pod {a.pod}: cpu and memory requests must not be negative")
        if a.cpu_milli > self.cpu_free[a.node]:
            raise CapacityError(f"pod {a.pod}: needs {a.cpu_milli} milli-cpu, node has {self.cpu_free[a.node]} free")
        if a.memory_mib > self.memory_free[a.node]:
            raise CapacityError(f"pod {a.pod}: needs {a.memory_mib} MiB, node has {self.memory_free[a.node]} free")
        free, memory = self.card_free[a.node], self.card_memory_free[a.node]
        seen: set[int] = set()
        for s in a.shares:
            if not 0 <= s.card < len(free):
                raise CapacityError(f"pod {a.pod}: card {s.card} does not exist on node {a.node}")
            if s.card in seen:
                raise CapacityError(f"pod {a.pod}: card {s.card} listed twice")
            seen.add(s.card)
            if not 0 < s.milli <= devices.MILLI_PER_CARD or s.memory_mib < 0:
                raise CapacityError(f"pod {a.pod}: card share must be 1..1000 milli with memory >= 0")
            if s.milli > free[s.card]:
                raise CapacityError(f"pod {a.pod}: needs {s.milli} milli of card {s.card}, {free[s.card]} free")
            if s.memory_mib > memory[s.card]:
                raise CapacityError(
                    f"pod {a.pod}: needs {s.memory_mib} MiB of card {s.card} memory, {memory[s.card]} free"
                )

    def allocate(self, a: Allocation) -> None:
        """Record ``a``; raises ``CapacityError`` (ledger unchanged) if it does not fit."""
        self.check(a)
        self._own(a.node)
        self._apply(a, -1)
        self._allocations[a.pod] = a
        self._on_node[a.node][a.pod] = a

    def release(self, pod: str) -> Allocation:
        """Give back everything ``pod`` holds; raises ``KeyError`` if it holds nothing."""
        a = self._allocations.pop(pod)
        self._own(a.node)
        del self._on_node[a.node][pod]
        self._apply(a, +1)
        return a

    def _apply(self, a: Allocation, sign: int) -> None:
        self.cpu_free[a.node] += sign * a.cpu_milli
        self.memory_free[a.node] += sign * a.memory_mib
        free, memory = self.card_free[a.node], self.card_memory_free[a.node]
        milli = 0
        for s in a.shares:
            free[s.card] += sign * s.milli
            memory[s.card] += sign * s.memory_mib
            milli += s.milli
        self.free_milli[a.node] += sign * milli
        self.allocated_milli -= sign * milli
        self.generation += 1
        self.node_generation[a.node] = self.generation
