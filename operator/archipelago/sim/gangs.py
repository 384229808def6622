"""The gang workload: gangs drawn from published job statistics, gangs read from YAML, and
islands laid over a node list that has none.

Units: time in seconds, cpu in milli-cores, memory in MiB, cards in whole cards.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import os
import random
import re
from collections.abc import Sequence
from typing import Annotated, Literal

import pydantic
import yaml

from archipelago import cluster as cluster_
from archipelago import workload
from archipelago.cluster import devices, nodes, topology
from archipelago.sim import inputs, specs


@dataclasses.dataclass(frozen=True)
class GangArrival:
    """A gang, when it is submitted (``arrival``, seconds) and how long it runs once started (``duration``, seconds)."""

    gang: workload.Gang
    arrival: float
    duration: float


# --- the generator ------------------------------------------------------------------------------

SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SIZE_WEIGHTS = (0.60, 0.08, 0.08, 0.12, 0.04, 0.03, 0.02, 0.015, 0.008, 0.004, 0.003)
"""Cards per gang, before capping to the cluster. Our own weights, chosen to meet the published
figures: the median job uses 1 GPU and the mean lies between Helios's 3.7 GPUs and Kalos's 26.8
(14.0 here); the largest jobs take 1,024 GPUs as in Seren and Kalos (Helios's largest: 2,048).
Sources: Hu et al., "Characterization and Prediction of Deep Learning Workloads in Large-Scale
GPU Datacenters", SC '21 (Helios), and Hu et al., "Characterization of Large Language Model
Development in the Datacentre", NSDI '24 (Acme: Seren and Kalos), whose artifact tabulates all
three side by side (InternLM/AcmeTrace, ``data/cluster_summary.csv``: ``med_gpu_num`` 1, 1, 1;
``avg_gpu_num`` 3.72, 5.68, 26.77; ``max_gpu`` 2,048, 1,024, 1,024)."""

DURATION_MEDIAN_S = 180.0
DURATION_SIGMA = 2.2
DURATION_MAX_S = 24 * 3600.0
"""Durations are log-normal. The median sits between Acme's (122 s Seren, 124 s Kalos) and
Helios's (206 s); a mean about 12x the median (sigma 2.2) matches Acme's mean-to-median ratio
(1,414 / 122 s in Seren), heavier than Philly and lighter than Helios (6,652 / 206 s). Same
source: the Acme artifact's ``cluster_summary.csv`` (``med_run_time_gpu``, ``avg_run_time_gpu``).
The one-day cap is our choice, so that a run ends; it cuts about 0.3% of draws."""

PRIORITY_CLASSES = (("high", 1000, False, 0.2), ("normal", 100, False, 0.5), ("spot", 0, True, 0.3))
"""(name, priority, preemptible, share of gangs). High-priority and preemptible spot classes
follow GFS (ASPLOS '26, the spot-GPU trace's paper); the normal class and the shares are ours."""

MIN_WINDOW_S = 600.0
"""The shortest arrival window (about three median durations), so that gangs arrive over a
stretch of time and never all at once. Our choice."""

REQUIRED_FROM_CARDS = 32
"""Multi-node gangs of at least this many cards that fit in one island require one; smaller
ones, and larger ones, prefer one. Our choice."""

CPU_MILLI_PER_CARD = 12_000
MEMORY_MIB_PER_CARD = 96 * 1024
LAUNCHER = workload.PodRequest("launcher", cpu_milli=1000, memory_mib=4096)
"""Per-card cpu and memory of workers (our choice: under the 16 cores and 128 GiB per card of
the tightest 8-card nodes in the spot-GPU list and the demo), and the cpu-only launcher of
multi-pod gangs."""


def generate(seed: int, *, gangs: int, cluster: cluster_.Cluster, load: float = 1.0) -> list[GangArrival]:
    """``gangs`` gangs arriving as a Poisson process that offers ``load`` x the cluster's cards.

    Per gang, in this order: a card model present in the cluster, weighted by its cards; a size
    from ``SIZE_WEIGHTS``, capped to half the model's cards and, on models whose servers hold
    fewer than 8 cards, to one server; a priority class; a log-normal duration. Pods take 8
    cards each (the model's ``large_pod`` where its link rules demand it), or the whole gang in
    one pod up to 8 cards; multi-pod gangs add a cpu-only launcher and ask for one island
    (``REQUIRED_FROM_CARDS``) where the model has islands. Spot gangs of 4 workers or more are
    elastic down to half their workers.

    Arrivals are Poisson, the first at 0. The rate makes ``offered_load`` equal ``load``:
    counting the whole of every gang instead would leave a short run's cluster half empty, as
    with heavy-tailed durations a few gangs carry most of the card-seconds, mostly after the
    window. But the window never shrinks below ``MIN_WINDOW_S``: too few gangs for a big
    cluster then offer less than ``load`` rather than arrive in one burst. The same seed gives
    the same gangs.

    Raises ``ValueError`` for a cluster without cards, ``gangs < 1`` or ``load <= 0``.
    """
    if gangs < 1 or load <= 0:
        raise ValueError(f"need gangs >= 1 and load > 0, got gangs={gangs}, load={load}")
    cards_of = collections.Counter({m: 0 for m in cluster.models()})
    node_cards: dict[str, int] = collections.defaultdict(int)
    for node in cluster.nodes:
        if node.model:
            cards_of[node.model] += node.capacity_milli // devices.MILLI_PER_CARD
            node_cards[node.model] = max(node_cards[node.model], node.card_count)
    models = [m for m in sorted(cards_of) if cards_of[m]]
    if not models:
        raise ValueError("the cluster has no healthy cards: nothing to place on")
    island_cards = _island_cards(cluster)
    rng = random.Random(seed)
    drawn: list[tuple[workload.Gang, float]] = []
    for k in range(gangs):
        model = rng.choices(models, weights=[cards_of[m] for m in models])[0]
        size = min(rng.choices(SIZES, weights=SIZE_WEIGHTS)[0], _largest(cards_of[model], node_cards[model]))
        _, priority, preemptible, _ = rng.choices(PRIORITY_CLASSES, weights=[c[3] for c in PRIORITY_CLASSES])[0]
        duration = min(DURATION_MAX_S, round(rng.lognormvariate(math.log(DURATION_MEDIAN_S), DURATION_SIGMA), 1))
        gang = _gang(f"g{k:05d}", model, size, node_cards[model], island_cards.get(model, 0), priority, preemptible)
        drawn.append((gang, max(duration, 1.0)))
    steps = list(itertools.accumulate([0.0] + [rng.expovariate(1.0) for _ in drawn[1:]]))
    rate = _rate(drawn, steps, load * cluster.capacity_milli / devices.MILLI_PER_CARD)
    result = []
    for (gang, duration), step in zip(drawn, steps, strict=True):
        arrival = round(step / rate, 1)
        result.append(GangArrival(dataclasses.replace(gang, queued_at=arrival), arrival, duration))
    return result


def offered_load(arrivals: Sequence[GangArrival], cluster: cluster_.Cluster) -> float:
    """Card-seconds offered inside the arrival window over the cluster's card-seconds in it.

    Each gang counts from its arrival to the end of its duration or of the window (the last
    arrival), whichever comes first. 0 for a window of no length.
    """
    if len(arrivals) < 2 or not cluster.total_cards:
        return 0.0
    start, end = arrivals[0].arrival, arrivals[-1].arrival
    if end <= start:
        return 0.0
    busy = sum(a.gang.cards * min(a.duration, end - a.arrival) for a in arrivals)
    return busy / (cluster.capacity_milli / devices.MILLI_PER_CARD * (end - start))


def _rate(drawn: Sequence[tuple[workload.Gang, float]], steps: Sequence[float], target_cards: float) -> float:
    """The arrival rate (per second) at which the gangs offer ``target_cards`` busy cards inside
    the arrival window, the window no shorter than ``MIN_WINDOW_S``; ``steps`` are the arrival
    times at rate 1. Found by bisection."""
    mean_rate = target_cards / (sum(g.cards * d for g, d in drawn) / len(drawn))
    if len(drawn) < 2:
        return mean_rate
    fastest = steps[-1] / MIN_WINDOW_S

    def offered(rate: float) -> float:
        window = steps[-1] / rate
        return sum(g.cards * min(d, window - t / rate) for (g, d), t in zip(drawn, steps, strict=True)) / window

    low, high = min(mean_rate, fastest), fastest
    if offered(high) < target_cards:
        return high
    for _ in range(60):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if offered(middle) < target_cards else (low, middle)
    return high


def _gang(
    name: str, model: str, size: int, node_cards: int, island_cards: int, priority: int, preemptible: bool
) -> workload.Gang:
    links = devices.model(model).links
    if links.large_pod and size > node_cards:
        per_pod = links.large_pod
    else:
        per_pod = min(size, 8, _floor_pow2(node_cards))
    workers = max(1, size // per_pod)
    request = workload.PodRequest(
        "worker",
        cpu_milli=CPU_MILLI_PER_CARD * per_pod,
        memory_mib=MEMORY_MIB_PER_CARD * per_pod,
        cards=per_pod,
        models=frozenset({model}),
    )
    pod_sets = [workload.PodSet("worker", workers, request)]
    min_member = None
    if workers > 1:
        pod_sets.insert(0, workload.PodSet("launcher", 1, LAUNCHER))
        if preemptible and workers >= 4:
            min_member = 1 + workers // 2
    request_topology = None
    if workers > 1 and island_cards:
        required = REQUIRED_FROM_CARDS <= size <= island_cards
        mode = workload.TopologyMode.REQUIRED if required else workload.TopologyMode.PREFERRED
        request_topology = workload.TopologyRequest(topology.ISLAND, mode)
    return workload.Gang(name, tuple(pod_sets), min_member, priority, preemptible, request_topology)


def _largest(model_cards: int, node_cards: int) -> int:
    """The largest gang on a model (our choice): half its cards, so every gang can run, and one
    node's cards on models whose servers hold fewer than 8 (nobody trains across 1-card boxes)."""
    half = _floor_pow2(model_cards // 2) or 1
    return half if node_cards >= 8 else min(half, _floor_pow2(node_cards))


def _island_cards(cluster: cluster_.Cluster) -> dict[str, int]:
    """Per card model, the cards of its largest island (a labelled island of more than one node)."""
    largest: dict[str, int] = {}
    if topology.ISLAND not in cluster.topology.levels:
        return largest
    for members in cluster.domains(topology.ISLAND).values():
        first = cluster.nodes[members[0]]
        if len(members) > 1 and first.model and topology.ISLAND in first.labels:
            cards = sum(cluster.nodes[i].card_count for i in members if cluster.nodes[i].model == first.model)
            largest[first.model] = max(largest.get(first.model, 0), cards)
    return largest


def _floor_pow2(n: int) -> int:
    """The largest power of two not above ``n`` (0 for ``n < 1``)."""
    return 1 << (n.bit_length() - 1) if n >= 1 else 0


# --- islands over a node list -------------------------------------------------------------------


def with_islands(node_list: Sequence[nodes.Node], per_island: int = 32) -> list[nodes.Node]:
    """The nodes, in the same order, with islands laid over those of 8 cards or more.

    Such nodes are grouped by card model in list order, ``per_island`` to an island, labelled
    ``archipelago.dev/island=<model>-<k>`` (k from 0) and ``archipelago.dev/spine=<model>``; a
    model's last island may be smaller. Smaller nodes keep their labels and join no island. A
    rail-optimised fabric joins about this many 8-GPU servers under one leaf layer; the 32 is
    our choice. Raises ``ValueError`` for ``per_island < 1``.
    """
    if per_island < 1:
        raise ValueError(f"per_island must be at least 1, got {per_island}")
    seen: collections.Counter[str] = collections.Counter()
    result = []
    for node in node_list:
        if node.model and node.card_count >= 8:
            k = seen[node.model] // per_island
            seen[node.model] += 1
            labels = {**node.labels, topology.SPINE: node.model, topology.ISLAND: f"{node.model}-{k}"}
            node = dataclasses.replace(node, labels=labels)
        result.append(node)
    return result


def island_cluster(node_list: Sequence[nodes.Node], per_island: int = 32) -> cluster_.Cluster:
    """``with_islands`` as a cluster with the default spine and island levels."""
    return cluster_.build(with_islands(node_list, per_island))


# --- the YAML reader ----------------------------------------------------------------------------

_Level = Literal[
    "archipelago.dev/spine", "archipelago.dev/island", "kubernetes.io/hostname", "archipelago.dev/link-group"
]
_Strict = pydantic.Strict()


class _TopologySpec(specs._Spec):
    level: _Level = topology.ISLAND  # type: ignore[assignment]
    mode: Literal["required", "preferred"] = "preferred"


class _PodSetSpec(specs._RequestSpec):
    role: str = pydantic.Field(min_length=1)
    count: specs._Count = 1
    min_count: specs._Whole | None = None


class _GangSpec(specs._Spec):
    name: str = pydantic.Field(min_length=1)
    arrival: specs._Seconds = 0.0
    duration: Annotated[float, _Strict, pydantic.Field(gt=0)]
    priority: Annotated[int, _Strict] = 0
    preemptible: Annotated[bool, _Strict] = False
    min_member: Annotated[int, _Strict, pydantic.Field(ge=1)] | None = None
    topology: _TopologySpec | None = None
    pod_sets: list[_PodSetSpec] = pydantic.Field(min_length=1)


class _GangWorkloadSpec(specs._Spec):
    gangs: list[_GangSpec] = pydantic.Field(min_length=1)


def read_gangs_yaml(path: str | os.PathLike) -> list[GangArrival]:
    """The gangs a gang workload file describes, sorted by arrival (ties in file order).

    ::

        gangs:
          - name: pretrain          # pods pretrain-<role>-<i>
            arrival: 0              # seconds, default 0
            duration: 3600          # seconds of work once started (required)
            priority: 1000          # default 0
            preemptible: false      # default false
            minMember: 5            # default: every pod
            topology: {level: archipelago.dev/island, mode: required}   # default: none
            podSets:
              - role: launcher
                cpuMilli: 1000
                memoryMiB: 4096
              - role: worker
                count: 4            # default 1
                minCount: 2         # default: see workload.Gang
                cards: 8            # default 0
                milliPerCard: 1000  # 1..1000; default 1000 when cards > 0
                deviceMemoryMiB: 0
                cpuMilli: 96000
                memoryMiB: 786432
                models: [H800]      # default: any model

    Levels: ``archipelago.dev/spine``, ``archipelago.dev/island``, ``kubernetes.io/hostname``
    or ``archipelago.dev/link-group``. Raises ``inputs.InputError`` naming file, line and field.
    """
    file = inputs.file_name(path)
    root, spec = specs._load(file, path, _GangWorkloadSpec, "gangs")
    result: list[GangArrival] = []
    made_by: dict[str, int] = {}
    for i, g in enumerate(spec.gangs):
        item = ("gangs", i)
        if g.name in made_by:
            raise specs._error_at(
                file, root, (*item, "name"), f"duplicate gang name {g.name!r}, also gangs[{made_by[g.name]}]"
            )
        made_by[g.name] = i
        roles: dict[str, int] = {}
        pod_sets = []
        for j, s in enumerate(g.pod_sets):
            where = (*item, "podSets", j)
            if s.role in roles:
                raise specs._error_at(
                    file, root, (*where, "role"), f"duplicate role {s.role!r}, also podSets[{roles[s.role]}]"
                )
            roles[s.role] = j
            try:
                pod_sets.append(workload.PodSet(s.role, s.count, s.request(s.role), s.min_count))
            except ValueError as exc:
                raise specs._domain_error(file, root, where, _PodSetSpec, exc) from None  # type: ignore[arg-type]
        request_topology = None if g.topology is None else workload.TopologyRequest(g.topology.level, g.topology.mode)
        try:
            gang = workload.Gang(
                g.name, tuple(pod_sets), g.min_member, g.priority, g.preemptible, request_topology, g.arrival
            )
        except ValueError as exc:
            raise specs._domain_error(file, root, item, _GangSpec, exc) from None
        result.append(GangArrival(gang, g.arrival, g.duration))
    return sorted(result, key=lambda a: a.arrival)


def is_gang_yaml(path: str | os.PathLike) -> bool:
    """True when ``path`` is a YAML file whose top-level mapping has a ``gangs`` key.

    Invalid YAML counts when a line starts with ``gangs:``, so that ``read_gangs_yaml`` reports
    the problem; a file that cannot be read answers False.
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return False
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return re.search(r"^gangs\s*:", text, re.MULTILINE) is not None
    if not isinstance(root, yaml.MappingNode):
        return False
    return any(isinstance(k, yaml.ScalarNode) and k.value == "gangs" for k, _ in root.value)
