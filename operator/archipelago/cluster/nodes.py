"""Nodes, taints and tolerations, with Kubernetes matching semantics.

Units: cpu in milli-cores, memory in MiB.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Mapping

from archipelago.cluster import devices

EFFECTS = frozenset({"NoSchedule", "PreferNoSchedule", "NoExecute"})


@dataclasses.dataclass(frozen=True, slots=True)
class Taint:
    """A node taint (core/v1 ``Taint``). Only ``NoSchedule`` and ``NoExecute`` repel pods."""

    key: str
    value: str = ""
    effect: str = "NoSchedule"

    def __post_init__(self) -> None:
        if self.effect not in EFFECTS:
            raise ValueError(f"taint effect must be one of {sorted(EFFECTS)}, got {self.effect!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Toleration:
    """A pod toleration (core/v1 ``Toleration``).

    ``operator`` is ``Equal`` or ``Exists``; an empty ``key`` with ``Exists`` tolerates every
    taint; an empty ``effect`` matches every effect.
    """

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def __post_init__(self) -> None:
        if self.operator not in ("Equal", "Exists"):
            raise ValueError(f"toleration operator must be Equal or Exists, got {self.operator!r}")
        if self.effect and self.effect not in EFFECTS:
            raise ValueError(f"toleration effect must be empty or one of {sorted(EFFECTS)}, got {self.effect!r}")

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if not self.key:
            return self.operator == "Exists"
        if self.key != taint.key:
            return False
        return self.operator == "Exists" or self.value == taint.value


_REPELLING = frozenset({"NoSchedule", "NoExecute"})


def tolerated(taints: tuple[Taint, ...], tolerations: tuple[Toleration, ...]) -> bool:
    """True when every repelling taint is tolerated by at least one toleration."""
    return all(any(t.tolerates(taint) for t in tolerations) for taint in taints if taint.effect in _REPELLING)


def selected(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    """True when ``labels`` carry every key/value pair of a ``nodeSelector``."""
    return all(labels.get(key) == value for key, value in selector.items())


@dataclasses.dataclass(frozen=True)
class Node:
    """A schedulable node and its accelerator cards.

    All cards of a node are of one model (a server is built from one card type). ``pool`` names
    the node pool (``AcceleratorPool``) the node belongs to. ``links`` overrides the card
    model's built-in link rules (an ``AcceleratorPool``'s ``linkRules``); ``None`` keeps them.

    Raises ``ValueError`` for negative capacity, mixed card models or card indices that are not
    ``0..n-1``.
    """

    name: str
    cpu_milli: int
    memory_mib: int
    devices: tuple[devices.Device, ...] = ()
    pool: str = "default"
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    links: devices.LinkTopology | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", types.MappingProxyType(dict(self.labels)))
        if self.cpu_milli < 0:
            raise ValueError(f"node {self.name}: cpu_milli must not be negative, got {self.cpu_milli}")
        if self.memory_mib < 0:
            raise ValueError(f"node {self.name}: memory_mib must not be negative, got {self.memory_mib}")
        if len({d.model for d in self.devices}) > 1:
            raise ValueError(
                f"node {self.name}: all cards must be one model, got {sorted({d.model for d in self.devices})}"
            )
        if [d.index for d in self.devices] != list(range(len(self.devices))):
            raise ValueError(f"node {self.name}: card indices must be 0..{len(self.devices) - 1} in order")

    @property
    def model(self) -> str | None:
        """The card model, or None for a node without cards."""
        return self.devices[0].model if self.devices else None

    @property
    def kind(self) -> devices.DeviceKind | None:
        return self.devices[0].kind if self.devices else None

    @property
    def card_count(self) -> int:
        return len(self.devices)

    @functools.cached_property
    def capacity_milli(self) -> int:
        """Card capacity in milli-cards; unhealthy cards count for nothing."""
        return devices.MILLI_PER_CARD * sum(d.healthy for d in self.devices)
