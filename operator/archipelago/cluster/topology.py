"""Interconnect islands across nodes, as a tree of levels read from node labels.

Levels run coarse to fine, following the topology-levels convention of Kueue's
topology-aware scheduling and KAI-Scheduler: for example ``archipelago.dev/spine`` then
``archipelago.dev/island``. Below the label levels sit two implicit levels, the node itself
(``kubernetes.io/hostname``) and the link group inside the node (NVLink domain, HCCS ring).
"""

from __future__ import annotations

import dataclasses

from archipelago.cluster import nodes as nodes_

SPINE = "archipelago.dev/spine"
ISLAND = "archipelago.dev/island"
HOSTNAME = "kubernetes.io/hostname"
DEFAULT_LEVELS: tuple[str, ...] = (SPINE, ISLAND)

DomainId = tuple[str, ...]
"""A domain at level k: the label values of levels 0..k, so domains of one level never collide."""


@dataclasses.dataclass(frozen=True, slots=True)
class Topology:
    """The label keys that define islands, coarse to fine.

    A node without a level's label is a domain of its own at that level and below, so it
    shares no island with anyone: the safe reading for a required-island request. A missing
    label *above* a present one (an island label but no spine label) is the anonymous domain
    ``""`` instead, so clusters that label only islands still group by island.
    """

    levels: tuple[str, ...] = DEFAULT_LEVELS

    def __post_init__(self) -> None:
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"topology levels must be distinct, got {list(self.levels)}")

    def depth(self, level: str) -> int:
        """Position of ``level`` (a label key, or ``kubernetes.io/hostname``) in the tree."""
        if level == HOSTNAME:
            return len(self.levels)
        try:
            return self.levels.index(level)
        except ValueError:
            raise ValueError(f"unknown topology level {level!r}; levels are {[*self.levels, HOSTNAME]}") from None

    def path(self, node: nodes_.Node) -> DomainId:
        """The node's domain at every level, coarse to fine, ending with the node itself."""
        values = [node.labels.get(key) for key in self.levels]
        labelled = [k for k, value in enumerate(values) if value is not None]
        finest = labelled[-1] if labelled else -1
        path = [
            value if value is not None else ("" if k < finest else f"<{node.name}>") for k, value in enumerate(values)
        ]
        path.append(node.name)
        return tuple(path)

    def domain(self, node: nodes_.Node, level: str) -> DomainId:
        return self.path(node)[: self.depth(level) + 1]
