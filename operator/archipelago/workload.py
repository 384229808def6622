"""What workloads ask for: pod requests, gangs, and the typical-task profile FGD needs.

Units: cpu in milli-cores, memory and device memory in MiB, card shares in milli-cards
(1000 = one whole card).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import types
from collections.abc import Iterable, Mapping

from archipelago.cluster import devices, nodes, topology


@dataclasses.dataclass(frozen=True)
class PodRequest:
    """One pod's request.

    ``cards`` cards, each with ``milli_per_card`` milli-cards (1000 = exclusive; 0 with cards
    means whole cards) and ``device_memory_mib`` of device memory. A *sharing* (fractional) pod
    asks for one card with less than 1000 milli. ``models`` lists the card models allowed (empty: any). ``resource``
    names the vendor resource (``nvidia.com/gpu``, ``huawei.com/Ascend910``); ``None`` accepts
    any. ``gang`` and ``role`` name the gang and pod set the pod belongs to, if any.
    ``avoid_nodes`` names nodes the pod must not run on: a restarted gang avoids the node
    where its pod failed or that was lost (an anti-affinity to node names, like a
    ``NotIn`` node affinity on ``kubernetes.io/hostname``).

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
    avoid_nodes: frozenset[str] = frozenset()
    priority: int = 0
    gang: str | None = None
    role: str | None = None

    def __post_init__(self) -> None:
        for field, what in (("models", "model names"), ("avoid_nodes", "node names")):
            value = getattr(self, field)
            if isinstance(value, str):
                raise ValueError(f"{field} must be a list of {what}, got the string {value!r}")
            object.__setattr__(self, field, frozenset(value))
        object.__setattr__(self, "node_selector", types.MappingProxyType(dict(self.node_selector)))
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
            self.avoid_nodes,
        )


LINK_GROUP = "archipelago.dev/link-group"
"""The pseudo topology level inside a node: one NVLink domain or HCCS ring."""


class TopologyMode(enum.StrEnum):
    REQUIRED = "required"
    PREFERRED = "preferred"


@dataclasses.dataclass(frozen=True, slots=True)
class TopologyRequest:
    """Where a gang's pods should sit together.

    ``level`` is a topology label key (``archipelago.dev/island``, ``archipelago.dev/spine``),
    ``kubernetes.io/hostname`` for one node, or ``LINK_GROUP`` for one link group of one node.
    ``required``: every pod in one domain of that level, or the gang waits. ``preferred``: the
    solver pays a penalty for every domain beyond the first.
    """

    level: str
    mode: TopologyMode = TopologyMode.PREFERRED

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", TopologyMode(self.mode))

    @property
    def required(self) -> bool:
        return self.mode is TopologyMode.REQUIRED

    @property
    def one_node(self) -> bool:
        """Required on one node, or one link group of one node: the gang shares a single node."""
        return self.required and self.level in (topology.HOSTNAME, LINK_GROUP)


@dataclasses.dataclass(frozen=True)
class PodSet:
    """``count`` pods of one role (launcher, worker), each asking for ``request``.

    ``min_count`` is the fewest pods of this set an admitted gang runs with; ``None`` lets
    the gang decide (see ``Gang``). ``first_index`` numbers the pods from there (an inference
    replica placed on its own keeps its index). Raises ``ValueError`` naming the field for a
    count below 1 or a ``min_count`` outside ``0..count``.
    """

    role: str
    count: int
    request: PodRequest
    min_count: int | None = None
    first_index: int = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"pod set {self.role!r}: count must be at least 1, got {self.count}")
        if self.min_count is not None and not 0 <= self.min_count <= self.count:
            raise ValueError(f"pod set {self.role!r}: min_count must be in 0..{self.count}, got {self.min_count}")


@dataclasses.dataclass(frozen=True)
class Gang:
    """Pods that run together or not at all.

    An admitted gang runs at least ``min_member`` pods (Volcano's ``minMember``; ``None``: all
    of them) and at least ``min_count`` pods of each pod set. A pod set without ``min_count``
    keeps all its pods, except the last one (by convention the workers), which gives up what
    ``min_member`` allows. ``priority`` is the PriorityClass value; only ``preemptible`` gangs
    can be preempted, and only by gangs of higher priority. ``queued_at`` (seconds) orders
    gangs of equal priority, first come first served. ``pod_prefix`` names the pods
    (``<pod_prefix>-<role>-<index>``); ``None`` uses ``name``.

    Raises ``ValueError`` naming the field for an empty gang, duplicate roles, or a
    ``min_member`` outside ``sum(lower bounds)..size``.
    """

    name: str
    pod_sets: tuple[PodSet, ...]
    min_member: int | None = None
    priority: int = 0
    preemptible: bool = False
    topology: TopologyRequest | None = None
    queued_at: float = 0.0
    pod_prefix: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pod_sets", tuple(self.pod_sets))
        if not self.pod_sets:
            raise ValueError(f"gang {self.name}: pod_sets must hold at least one pod set")
        roles = [s.role for s in self.pod_sets]
        if len(set(roles)) != len(roles):
            raise ValueError(f"gang {self.name}: pod set roles must be distinct, got {roles}")
        member = self.size if self.min_member is None else self.min_member
        fixed = sum(s.count if s.min_count is None else s.min_count for s in self.pod_sets[:-1])
        if not 1 <= member <= self.size or member < fixed + (self.pod_sets[-1].min_count or 0):
            raise ValueError(
                f"gang {self.name}: min_member must be between {max(1, fixed)} (the pods the pod sets keep) "
                f"and {self.size} (all pods), got {member}"
            )
        object.__setattr__(self, "min_member", member)

    @property
    def size(self) -> int:
        """Pods in the gang when it runs whole."""
        return sum(s.count for s in self.pod_sets)

    @property
    def cards(self) -> int:
        """Cards the whole gang holds (a fractional pod counts one card)."""
        return sum(s.count * s.request.cards for s in self.pod_sets)

    @property
    def milli(self) -> int:
        """Card demand of the whole gang in milli-cards."""
        return sum(s.count * s.request.milli for s in self.pod_sets)

    @property
    def elastic(self) -> bool:
        return self.min_member < self.size  # type: ignore[operator]

    def lower_bounds(self) -> tuple[int, ...]:
        """The fewest pods of each pod set an admitted gang runs with."""
        bounds = [s.count if s.min_count is None else s.min_count for s in self.pod_sets]
        last = self.pod_sets[-1]
        if last.min_count is None:
            bounds[-1] = max(0, self.min_member - sum(bounds[:-1]))  # type: ignore[operator]
        return tuple(bounds)

    def shape(self) -> tuple:
        """Everything placement reads of the gang but its names and arrival: two gangs of one
        shape fit, fail and wait alike. Hashable."""
        sets = tuple(
            (s.request.fit_key, s.count, lower) for s, lower in zip(self.pod_sets, self.lower_bounds(), strict=True)
        )
        return (sets, self.min_member, self.priority, self.preemptible, self.topology)

    def pod(self, pod_set: PodSet, index: int) -> PodRequest:
        """Pod ``index`` of ``pod_set``, named ``<pod_prefix>-<role>-<first_index + index>``."""
        name = f"{self.pod_prefix or self.name}-{pod_set.role}-{pod_set.first_index + index}"
        return dataclasses.replace(
            pod_set.request, name=name, priority=self.priority, gang=self.name, role=pod_set.role
        )

    def pods(self) -> tuple[PodRequest, ...]:
        """Every pod of the gang, pod set by pod set."""
        return tuple(self.pod(s, i) for s in self.pod_sets for i in range(s.count))


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
