"""Generated island clusters and gang batches for the scheduling-cycle benchmark.

The shape follows ``../shared/notes/cpsat-gang-model.md``: 8-card servers, 32 per island,
30-60% busy, and about one pending pod per 10 cards in heavy-tailed gangs of 1-512 cards
with priorities, some requiring one island and some preferring it. The gang-size mix is our
choice, shaped after the Helios and Acme traces (Hu et al., SC '21 and NSDI '24): most gangs
take one server or less, a few take hundreds of cards.
"""

from __future__ import annotations

import dataclasses
import random

from archipelago import cluster as cluster_
from archipelago import workload
from archipelago.cluster import devices, ledger, nodes, topology
from archipelago.placement import fit, plan
from archipelago.policies import scoring

MODELS = ("H800", "A100-SXM4-80GB", "Ascend910B")
"""Island models, in rotation: two NVLink GPU generations and an HCCS NPU."""
NODE_CARDS = 8
PER_ISLAND = 32
ISLANDS_PER_SPINE = 4
GANG_CARDS = (
    (1, 0.30),
    (2, 0.12),
    (4, 0.12),
    (8, 0.20),
    (16, 0.10),
    (32, 0.08),
    (64, 0.05),
    (128, 0.02),
    (256, 0.007),
    (512, 0.003),
)
"""(cards, share of gangs): our heavy-tailed mix, mean about 13 cards (within Helios/Acme's 4-27)."""
PRIORITIES = ((1000, False, 0.2), (100, False, 0.5), (0, True, 0.3))
"""(PriorityClass value, preemptible, share): high, normal and spot classes."""


def island_cluster(cards: int) -> cluster_.Cluster:
    """``cards // 8`` servers of 8 cards, 32 per island, 4 islands per spine, models in rotation."""
    count = max(1, cards // NODE_CARDS)
    built = []
    for i in range(count):
        island = i // PER_ISLAND
        built.append(_server(f"node-{i:05d}", island, spine=island // ISLANDS_PER_SPINE))
    return cluster_.build(built)


def _server(name: str, island: int, *, spine: int) -> nodes.Node:
    """An 8-card server of island ``island``'s model (models in rotation), with its labels."""
    return nodes.Node(
        name=name,
        cpu_milli=128_000,
        memory_mib=1024 * 1024,
        devices=devices.cards(MODELS[island % len(MODELS)], NODE_CARDS),
        labels={topology.ISLAND: f"island-{island}", topology.SPINE: f"spine-{spine}"},
    )


def _shape(rng: random.Random) -> tuple[int, int, bool]:
    cards = rng.choices([c for c, _ in GANG_CARDS], [w for _, w in GANG_CARDS])[0]
    priority, preemptible, _ = rng.choices(PRIORITIES, [w for *_, w in PRIORITIES])[0]
    return cards, priority, preemptible


def gang(
    name: str, cards: int, model: str, rng: random.Random, *, priority: int = 0, preemptible: bool = False
) -> workload.Gang:
    """A gang of ``cards`` cards of ``model``: one pod up to a server, 8-card pods beyond.

    Gangs of more than a server require one island half the time (above 256 cards they only
    prefer it); smaller multi-pod gangs prefer one island.
    """
    per_pod = min(cards, NODE_CARDS)
    request = workload.PodRequest(
        name="worker", cpu_milli=8_000 * per_pod, memory_mib=65_536 * per_pod, cards=per_pod, models=frozenset({model})
    )
    pods = cards // per_pod
    if pods > 1 and cards <= 256 and rng.random() < 0.5:
        topo = workload.TopologyRequest(topology.ISLAND, workload.TopologyMode.REQUIRED)
    elif pods > 1:
        topo = workload.TopologyRequest(topology.ISLAND, workload.TopologyMode.PREFERRED)
    else:
        topo = None
    return workload.Gang(
        name, (workload.PodSet("worker", pods, request),), priority=priority, preemptible=preemptible, topology=topo
    )


def busy_snapshot(
    cluster: cluster_.Cluster, rng: random.Random, busy: tuple[float, float] = (0.3, 0.6)
) -> plan.Snapshot:
    """Fill each island to a random share in ``busy`` with running gangs (spot ones preemptible)."""
    book = ledger.Ledger(cluster)
    running: dict[str, plan.Running] = {}
    for members in cluster.domains(topology.ISLAND).values():
        target = rng.uniform(*busy) * len(members) * NODE_CARDS
        used = 0
        while used < target:
            cards = rng.choice((1, 2, 4, 8, 8, 16, 32))
            priority, preemptible, _ = rng.choices(PRIORITIES, [w for *_, w in PRIORITIES])[0]
            name = f"run-{len(running)}"
            g = gang(name, cards, cluster.nodes[members[0]].model, rng, priority=priority, preemptible=preemptible)
            placed = _first_fit(book, g, members)
            if placed is None:
                break
            running[name] = plan.Running(g, placed, started_at=-rng.uniform(60, 36_000))
            used += cards
    return plan.Snapshot(book, running, now=0.0)


def _first_fit(book: ledger.Ledger, g: workload.Gang, members: list[int]) -> tuple[str, ...] | None:
    done = []
    for pod in g.pods():
        for i in members:
            cards = fit.choose(book, i, pod, g.cards)
            if cards is not None:
                book.allocate(scoring.allocation(pod, scoring.Placement(i, cards, 0)))
                done.append(pod.name)
                break
        else:
            for name in done:
                book.release(name)
            return None
    return tuple(done)


WAITED_S = 3600.0
"""How long before the snapshot's time (0) the pending gangs were queued: past any preemption
delay, so that a benchmark cycle runs its victim search as a contended cluster's cycle does."""


def pending_batch(cluster: cluster_.Cluster, pods: int, rng: random.Random) -> list[workload.Gang]:
    """Pending gangs totalling about ``pods`` pods, models drawn in proportion to the cluster.

    They were queued one second apart from ``WAITED_S`` seconds before the snapshot's time.
    """
    models = [n.model for n in cluster.nodes if n.model]
    batch: list[workload.Gang] = []
    total = 0
    while total < pods:
        cards, priority, preemptible = _shape(rng)
        g = gang(f"job-{len(batch)}", cards, rng.choice(models), rng, priority=priority, preemptible=preemptible)
        g = dataclasses.replace(g, queued_at=float(len(batch)) - WAITED_S)
        batch.append(g)
        total += g.size
    return batch


def hard_case(seed: int) -> tuple[plan.Snapshot, list[workload.Gang]]:
    """A small contended batch where greedy order goes wrong: the solver benchmark's input.

    Six islands of eight servers (H800, A100 and Ascend910B), each with a random number of
    busy cards scattered so that HCCS rings and servers are partly used; then required-island
    gangs of 8-card pods that together want more than is free, Ascend gangs of 2- and 4-card
    pods that must each sit in one ring, and gangs that accept either GPU model.
    """
    rng = random.Random(seed)
    built = []
    for island in range(6):
        built.extend(_server(f"h{island}-{k}", island, spine=island // 3) for k in range(8))
    cluster = cluster_.build(built)
    book = ledger.Ledger(cluster)
    for i in range(len(cluster)):
        busy = rng.sample(range(NODE_CARDS), rng.choice((0, 0, 1, 2, 3, 5, 8)))
        if busy:
            book.allocate(
                ledger.Allocation(
                    f"busy-{i}", i, shares=tuple(ledger.CardShare(c, devices.MILLI_PER_CARD) for c in busy)
                )
            )
    batch: list[workload.Gang] = []
    gpus = frozenset(MODELS[:2])
    for n in range(rng.randint(10, 16)):
        kind = rng.random()
        priority = rng.choice((0, 100, 100, 1000))
        if kind < 0.45:
            model = rng.choice(MODELS)
            g = gang(f"req-{n}", 8 * rng.choice((2, 3, 4, 5, 6)), model, rng, priority=priority)
            g = dataclasses.replace(
                g, topology=workload.TopologyRequest(topology.ISLAND, workload.TopologyMode.REQUIRED)
            )
        elif kind < 0.75:
            per_pod = rng.choice((2, 4))
            request = workload.PodRequest(
                name="worker", cpu_milli=4_000, cards=per_pod, models=frozenset({"Ascend910B"})
            )
            g = workload.Gang(f"npu-{n}", (workload.PodSet("worker", rng.randint(2, 6), request),), priority=priority)
        else:
            request = workload.PodRequest(name="worker", cpu_milli=8_000, cards=8, models=gpus)
            g = workload.Gang(
                f"mixed-{n}",
                (workload.PodSet("worker", rng.randint(2, 8), request),),
                priority=priority,
                topology=workload.TopologyRequest(topology.ISLAND, workload.TopologyMode.PREFERRED),
            )
        batch.append(dataclasses.replace(g, queued_at=float(n)))
    return plan.Snapshot(book, {}, now=0.0), batch
