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

    A node without a level's label is a domain of its own at that level and below: it shares
    no island with anyone, which is the safe reading for a required-island request.
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
        values: list[str] = []
        for key in self.levels:
            value = node.labels.get(key)
            if value is None:
                # Unlabelled: a private domain, so it never joins anyone else's island.
                value = f"<{node.name}>"
            values.append(value)
        values.append(node.name)
        return tuple(values)

    def domain(self, node: nodes_.Node, level: str) -> DomainId:
        return self.path(node)[: self.depth(level) + 1]
