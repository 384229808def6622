"""What workloads ask for: pod requests, gangs, and the typical-task profile FGD needs.

Units: cpu in milli-cores, memory and device memory in MiB, card shares in milli-cards
(1000 = one whole card).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import types
from collections.abc import Iterable, Mapping

from archipelago.cluster import devices, nodes


@dataclasses.dataclass(frozen=True)
class PodRequest:
    """One pod's request.

    ``cards`` cards, each with ``milli_per_card`` milli-cards (1000 = exclusive; 0 with cards
    means whole cards) and ``device_memory_mib`` of device memory. A *sharing* (fractional) pod
    asks for one card with less than 1000 milli. ``models`` lists the card models allowed (empty: any). ``resource``
    names the vendor resource (``nvidia.com/gpu``, ``huawei.com/Ascend910``); ``None`` accepts
    any. ``gang`` and ``role`` name the gang and pod set the pod belongs to, if any.

    Raises ``ValueError`` naming the field for negative values, a share outside 1..1000, or a
    share without cards.
    """

    name: str
    cpu_milli: int = 0
    memory_mib: int = 0
    cards: int = 0
    milli_per_card: int = 0
    device_memory_mib: int = 0
    models: frozenset[str] = frozenset()
    resource: str | None = None
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[nodes.Toleration, ...] = ()
    priority: int = 0
    gang: str | None = None
    role: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.models, str):
            raise ValueError(f"models must be a list of model names, got the string {self.models!r}")
        object.__setattr__(self, "node_selector", types.MappingProxyType(dict(self.node_selector)))
        object.__setattr__(self, "models", frozenset(self.models))
        for field in ("cpu_milli", "memory_mib", "cards", "milli_per_card", "device_memory_mib"):
            value = getattr(self, field)
            if value < 0:
                raise ValueError(f"{field} must not be negative, got {value}")
        if self.cards and self.milli_per_card == 0:
            object.__setattr__(self, "milli_per_card", devices.MILLI_PER_CARD)
        if self.milli_per_card > devices.MILLI_PER_CARD:
            raise ValueError(
                f"milli_per_card must be at most 1000 (one whole card), got {self.milli_per_card}; "
                "ask for more cards instead"
            )
        if self.cards == 0 and (self.milli_per_card or self.device_memory_mib):
            raise ValueError("milli_per_card and device_memory_mib need cards >= 1")

    @property
    def milli(self) -> int:
        """Total card demand in milli-cards: ``cards * milli_per_card``."""
        return self.cards * self.milli_per_card

    @property
    def sharing(self) -> bool:
        """True for a fractional pod: one card, less than a whole one."""
        return self.cards == 1 and self.milli_per_card < devices.MILLI_PER_CARD

    @functools.cached_property
    def fit_key(self) -> tuple:
        """Everything that decides where the pod fits, and nothing else (not its name)."""
        return (
            self.cpu_milli,
            self.memory_mib,
            self.cards,
            self.milli_per_card,
            self.device_memory_mib,
            self.models,
            self.resource,
            tuple(sorted(self.node_selector.items())),
            self.tolerations,
        )


@dataclasses.dataclass(frozen=True)
class Gang:
    """Pods that run together or not at all: at least ``min_member`` of ``pods`` must be placed.

    Raises ``ValueError`` unless ``1 <= min_member <= len(pods)``.
    """

    name: str
    pods: tuple[PodRequest, ...]
    min_member: int

    def __post_init__(self) -> None:
        if not 1 <= self.min_member <= len(self.pods):
            raise ValueError(f"min_member must be between 1 and {len(self.pods)}, got {self.min_member}")


@dataclasses.dataclass(frozen=True, slots=True)
class TypicalTask:
    """One task shape of a workload's profile, with its frequency ``weight`` (weights sum to 1)."""

    cpu_milli: int
    milli_per_card: int
    cards: int
    models: frozenset[str]
    weight: float
    memory_mib: int = 0
    """Mean memory of the tasks of this shape (FGD ignores it; Archipelago's policy uses it)."""

    def runs_on(self, model: str | None) -> bool:
        return not self.models or model in self.models


def typical_tasks(
    pods: Iterable[PodRequest], coverage: float = 0.95, demand_coverage: float = 0.0
) -> tuple[TypicalTask, ...]:
    """The most frequent task shapes covering at least ``coverage`` of the tasks.

    A shape is (cpu, milli per card, cards, models); memory is ignored and cpu-only tasks count.
    Shapes are taken by count, largest first (equal counts: larger card demand, then larger cpu,
    first) until they cover ``coverage`` of all tasks. This is the target-workload estimate of
    FGD (Weng et al., "Beware of Fragmentation", USENIX ATC '23, section 4).

    ``demand_coverage`` adds the shapes with the largest card demand (count x cards x milli)
    until they make up that share of all card demand: a count cut drops rare large jobs (an
    8-card job that is 1% of pods can be 10% of the cards) and then nothing keeps nodes whole
    for them. Weights are counts renormalised over the chosen shapes, so they sum to 1. Each
    shape also carries the mean memory of its tasks.
    """
    counts: collections.Counter[tuple] = collections.Counter()
    memory: collections.Counter[tuple] = collections.Counter()
    for p in pods:
        shape = (p.cpu_milli, p.milli_per_card, p.cards, p.models)
        counts[shape] += 1
        memory[shape] += p.memory_mib
    total = sum(counts.values())
    if total == 0:
        return ()
    chosen: dict[tuple, int] = {}
    taken = 0
    for shape, count in sorted(counts.items(), key=lambda kv: (-kv[1], -_demand(kv[0]), -kv[0][0], -kv[0][2])):
        if taken >= coverage * total:
            break
        chosen[shape] = count
        taken += count
    all_demand = sum(_demand(shape) * count for shape, count in counts.items())
    covered = 0
    for shape, count in sorted(counts.items(), key=lambda kv: (-_demand(kv[0]) * kv[1], -_demand(kv[0]))):
        if covered >= demand_coverage * all_demand or not _demand(shape):
            break
        chosen[shape] = count
        covered += _demand(shape) * count
    weight = sum(chosen.values())
    return tuple(
        TypicalTask(*shape, weight=count / weight, memory_mib=memory[shape] // count) for shape, count in chosen.items()
    )


def _demand(shape: tuple) -> int:
    """Card demand of one task of ``shape`` (cpu, milli per card, cards, models), in milli-cards."""
    return shape[1] * shape[2]
