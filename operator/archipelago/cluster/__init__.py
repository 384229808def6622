"""The cluster model: nodes, their cards and islands, and the allocation ledger.

Pure Python: no Kubernetes imports. The operator builds it from Node objects and the
simulator from traces; both then schedule against the same model.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

from archipelago.cluster import nodes as nodes_
from archipelago.cluster import topology as topology_

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """An immutable set of nodes with their island topology.

    Nodes are addressed by position (``int`` index) throughout the core; ``index_of`` maps
    names back. Raises ``ValueError`` on duplicate node names.
    """

    nodes: tuple[nodes_.Node, ...]
    topology: topology_.Topology = topology_.Topology()
    _index: dict[str, int] = dataclasses.field(init=False, repr=False, compare=False)
    _paths: tuple[topology_.DomainId, ...] = dataclasses.field(init=False, repr=False, compare=False)
    _derived: dict[str, Any] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {node.name: i for i, node in enumerate(self.nodes)}
        if len(index) != len(self.nodes):
            dupes = [name for name, n in collections.Counter(n.name for n in self.nodes).items() if n > 1]
            raise ValueError(f"duplicate node names: {dupes[:5]}")
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_paths", tuple(self.topology.path(n) for n in self.nodes))
        object.__setattr__(self, "_derived", {})

    def __len__(self) -> int:
        return len(self.nodes)

    def index_of(self, name: str) -> int:
        """Position of the node called ``name``; raises ``KeyError`` for unknown names."""
        return self._index[name]

    def names(self) -> frozenset[str]:
        """The node names."""
        return frozenset(self._index)

    def path(self, i: int) -> topology_.DomainId:
        """Node ``i``'s domain at every level, coarse to fine, ending with the node name."""
        return self._paths[i]

    def derived(self, key: str, build: Callable[[Cluster], T]) -> T:
        """``build(self)``, made once and kept with this cluster under ``key``.

        For facts that follow from the nodes alone, which every cycle on the cluster would
        otherwise recompute (the placers' per-node arrays and pool layout).
        """
        value = self._derived.get(key)
        if value is None:
            with _DERIVING:
                value = self._derived.get(key)
                if value is None:
                    value = self._derived[key] = build(self)
        return value

    def domains(self, level: str) -> dict[topology_.DomainId, list[int]]:
        """Node indices grouped by their domain at ``level``, in node order."""
        depth = self.topology.depth(level)
        groups: dict[topology_.DomainId, list[int]] = collections.defaultdict(list)
        for i, path in enumerate(self._paths):
            groups[path[: depth + 1]].append(i)
        return dict(groups)

    def domain_ids(self, level: str) -> np.ndarray:
        """Each node's domain number at ``level``, numbered in the order of ``domains(level)``.

        Made once per level and kept (``derived``), for numpy aggregates per domain. Raises
        ``ValueError`` for a level the topology does not know.
        """

        def build(cluster: Cluster) -> np.ndarray:
            ids = np.empty(len(cluster), dtype=np.int64)
            for d, members in enumerate(cluster.domains(level).values()):
                ids[members] = d
            return ids

        return self.derived(f"domain_ids:{level}", build)

    @property
    def total_cards(self) -> int:
        return sum(n.card_count for n in self.nodes)

    @property
    def capacity_milli(self) -> int:
        """Healthy card capacity of all nodes, in milli-cards."""
        return sum(n.capacity_milli for n in self.nodes)

    def models(self) -> list[str]:
        """The card models present, sorted."""
        return sorted({n.model for n in self.nodes if n.model})


_DERIVING = threading.Lock()


def build(nodes: Iterable[nodes_.Node], levels: Sequence[str] = topology_.DEFAULT_LEVELS) -> Cluster:
    return Cluster(tuple(nodes), topology_.Topology(tuple(levels)))
