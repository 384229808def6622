"""The ``replay`` protocol for gangs: an event-driven simulation of the queue and the cluster.

Events are gang arrivals, which enter the queue, and departures, ``duration`` seconds after a
gang (last) started. All events at one time stamp are applied together, departures first;
then, if the queue is not empty, the scheduler runs once on a snapshot of the ledger and the
running gangs. With a scheduling period it runs only at multiples of the period instead, on
everything that happened since, as a real scheduler does (Volcano's schedule period is 1 s;
Archipelago's operator settles 0.2 s after an event before it runs a cycle).
The scheduler also runs at a plan's ``retry_at`` (a gang held back by the preemption delay
may preempt then), event or not, as the operator does.

The scheduler's evictions are applied to the ledger before its placements, and every
placement goes through ``Ledger.allocate``, which raises on over-commit: that is a scheduler
bug and propagates.

An evicted gang goes back to the queue with its original ``queued_at`` and, since gangs in
this simulation never checkpoint, redoes its full duration when it restarts: everything since
its start is lost. A gang that shrinks (an elastic gang losing pods) keeps running, and
finishes when it would have; the slowdown of fewer workers is not modelled.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import heapq
import importlib
import itertools
import math
import multiprocessing
import os
import time
import types
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from archipelago import cluster as cluster_
from archipelago import workload
from archipelago.cluster import devices, topology
from archipelago.cluster import ledger as ledger_
from archipelago.placement import baselines, plan
from archipelago.sim import gangs

Scheduler = Callable[[plan.Snapshot, Sequence[workload.Gang], plan.Config], plan.Plan]
"""One scheduling cycle: the signature of ``archipelago.cycle.run``."""

SCHEDULERS = ("archipelago", "greedy", "volcano-like")


def scheduler(name: str) -> Scheduler:
    """The scheduler called ``name``: ``archipelago`` (``cycle.run``), ``greedy`` or ``volcano-like``.

    Raises ``ValueError`` for an unknown name, or for ``archipelago`` in a build without
    ``archipelago.cycle``.
    """
    if name == "greedy":
        return baselines.first_fit
    if name == "volcano-like":
        return baselines.volcano_like
    if name == "archipelago":
        try:
            cycle = importlib.import_module("archipelago.cycle")
        except ModuleNotFoundError as exc:
            if exc.name != "archipelago.cycle":
                raise
            raise ValueError(
                "scheduler 'archipelago' needs archipelago.cycle.run, which this build does not have; "
                "use greedy or volcano-like"
            ) from None
        return cycle.run
    raise ValueError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULERS)}")


@dataclasses.dataclass(frozen=True)
class Result:
    """What one scheduler did with one gang workload. Times in seconds, shares in %.

    ``gpu_alloc_pct``: time-weighted mean of allocated cards over capacity, from the first to
    the last arrival. ``gangs_placed``: gangs that started at least once.
    ``gangs_single_island_pct``: among placements whose card-holding pods span more than one
    node, the share whose nodes all lie in one island (None without such placements);
    ``gangs_single_island_all_pct`` counts every placement, so a one-node gang is in one
    island. ``gangs_fewest_islands_pct``: among the same multi-node placements, the share
    that spans no more islands than the gang's cards need, counting the model's largest
    islands whole (a 512-card gang on islands of 256 cards needs 2): unlike the one-island
    share, it also judges gangs larger than an island. Placements count each start,
    restarts included. The island is the ``archipelago.dev/island`` level, else the finest
    label level; an unlabelled node is an island of its own. ``queue_delay_*``: from arrival
    to first start; a gang that never started counts with its wait until ``end_s``, the last
    event (so it is a lower bound).
    ``preemptions``: whole-gang evictions, of ``gangs_preempted`` distinct gangs, one of them
    ``preemptions_max_per_gang`` times; ``shrinks``: elastic gangs that lost pods;
    ``lost_card_seconds``: as the scheduler reported it. ``cycle_ms_*``: wall time of the
    scheduler calls.
    """

    scheduler: str
    gangs: int
    gangs_placed: int
    gpu_alloc_pct: float
    gangs_single_island_pct: float | None
    gangs_single_island_all_pct: float | None
    gangs_fewest_islands_pct: float | None
    queue_delay_mean_s: float
    queue_delay_p95_s: float
    preemptions: int
    gangs_preempted: int
    preemptions_max_per_gang: int
    shrinks: int
    lost_card_seconds: float
    cycles: int
    cycle_ms_p50: float
    cycle_ms_p99: float
    end_s: float
    first_start: Mapping[str, float] = dataclasses.field(repr=False, default_factory=dict)
    """Gang name to the time (s) it first started."""


_DEPART, _ARRIVE, _TICK = 0, 1, 2


def replay(
    arrivals: Iterable[gangs.GangArrival],
    cluster: cluster_.Cluster,
    schedule: str | Scheduler,
    *,
    config: plan.Config | None = None,
    horizon_s: float | None = None,
    period_s: float = 0.0,
) -> Result:
    """Simulate ``arrivals`` on ``cluster`` under ``schedule`` (a name from ``SCHEDULERS`` or a callable).

    Runs until no event is left, or until the first event after ``horizon_s``. The scheduler
    runs after every event time while gangs wait, or with ``period_s > 0`` at multiples of
    ``period_s`` seconds only. Raises ``ValueError`` for ``period_s < 0``. Raises
    ``ValueError`` for duplicate gang names, a cluster without cards, or a plan that places a
    gang not pending, pods of another gang or fewer than ``min_member`` pods; raises
    ``ledger.CapacityError`` for a plan that over-commits; raises ``RuntimeError`` if the
    scheduler changes the snapshot's ledger.
    """
    name = schedule if isinstance(schedule, str) else getattr(schedule, "__name__", "custom")
    run = scheduler(schedule) if isinstance(schedule, str) else schedule
    config = config or plan.Config()
    arrivals = sorted(arrivals, key=lambda a: a.arrival)
    by_name = {a.gang.name: a for a in arrivals}
    if len(by_name) != len(arrivals):
        raise ValueError("gang names must be unique")
    if cluster.capacity_milli == 0:
        raise ValueError("the cluster has no healthy cards: nothing to place on")
    if period_s < 0:
        raise ValueError(f"period_s must not be negative, got {period_s}")
    state = _State(cluster, by_name)
    events: list[tuple[float, int, int, str, int]] = []
    order = itertools.count()
    for a in arrivals:
        heapq.heappush(events, (a.arrival, _ARRIVE, next(order), a.gang.name, 0))
    first = arrivals[0].arrival if arrivals else 0.0
    last = arrivals[-1].arrival if arrivals else 0.0
    area, clock, alloc_at_last = 0.0, first, 0
    cycle_ms: list[float] = []
    now = first
    tick: float | None = None  # the next cycle's time, with a period
    retries: set[float] = set()  # times the scheduler asked to run again at (Plan.retry_at)
    while events and (horizon_s is None or events[0][0] <= horizon_s):
        now = events[0][0]
        area += state.ledger.allocated_milli * (min(now, last) - clock)
        clock = min(now, last)
        while events and events[0][0] == now:
            _, kind, _, gang, epoch = heapq.heappop(events)
            if kind == _ARRIVE:
                state.queue[gang] = by_name[gang]
            elif kind == _DEPART and gang in state.running and state.epoch[gang] == epoch:  # not a run since evicted
                state.finish(gang)
        if state.queue and period_s and now != tick:
            if tick is None or tick < now:
                tick = math.ceil(now / period_s) * period_s
                heapq.heappush(events, (tick, _TICK, next(order), "", 0))
        elif state.queue:
            tick = None
            snapshot = plan.Snapshot(state.ledger, types.MappingProxyType(state.running), now)
            generation = state.ledger.generation
            started = time.perf_counter()
            result = run(snapshot, [a.gang for a in state.queue.values()], config)
            cycle_ms.append((time.perf_counter() - started) * 1000)
            if state.ledger.generation != generation:
                raise RuntimeError(f"scheduler {name} changed the snapshot's ledger at t={now}")
            for gang, duration, epoch in state.apply(result, now):
                heapq.heappush(events, (now + duration, _DEPART, next(order), gang, epoch))
            if result.retry_at is not None and result.retry_at > now and result.retry_at not in retries:
                retries.add(result.retry_at)  # a gang may preempt then: a cycle even without an event
                heapq.heappush(events, (result.retry_at, _TICK, next(order), "", 0))
        if now == last:
            alloc_at_last = state.ledger.allocated_milli
    span = last - first
    capacity = cluster.capacity_milli
    delays = np.array([state.first_start.get(a.gang.name, now) - a.arrival for a in arrivals] or [0.0])
    return Result(
        scheduler=name,
        gangs=len(arrivals),
        gangs_placed=len(state.first_start),
        gpu_alloc_pct=(area / span if span > 0 else alloc_at_last) / capacity * 100,
        gangs_single_island_pct=_pct(state.multi_node_single, state.multi_node),
        gangs_single_island_all_pct=_pct(state.single, state.placements),
        gangs_fewest_islands_pct=_pct(state.multi_node_fewest, state.multi_node),
        queue_delay_mean_s=float(delays.mean()),
        queue_delay_p95_s=float(np.percentile(delays, 95)),
        preemptions=sum(state.evicted.values()),
        gangs_preempted=len(state.evicted),
        preemptions_max_per_gang=max(state.evicted.values(), default=0),
        shrinks=state.shrinks,
        lost_card_seconds=state.lost_card_seconds,
        cycles=len(cycle_ms),
        cycle_ms_p50=float(np.percentile(cycle_ms, 50)) if cycle_ms else 0.0,
        cycle_ms_p99=float(np.percentile(cycle_ms, 99)) if cycle_ms else 0.0,
        end_s=now,
        first_start=dict(state.first_start),
    )


class _State:
    """The simulation's mutable state: the ledger, the queue, the running gangs and the counters."""

    def __init__(self, cluster: cluster_.Cluster, arrivals: dict[str, gangs.GangArrival]) -> None:
        self.ledger = ledger_.Ledger(cluster)
        self.arrivals = arrivals
        self.queue: dict[str, gangs.GangArrival] = {}
        self.running: dict[str, plan.Running] = {}
        self.epoch: dict[str, int] = {}  # runs started per gang; a departure names the run it ends
        self.first_start: dict[str, float] = {}
        self.shrinks = 0
        self.evicted: collections.Counter[str] = collections.Counter()  # whole evictions per gang
        self.lost_card_seconds = 0.0
        self.placements = self.single = self.multi_node = self.multi_node_single = self.multi_node_fewest = 0
        levels = cluster.topology.levels
        level = topology.ISLAND if topology.ISLAND in levels else (levels[-1] if levels else topology.HOSTNAME)
        self.depth = cluster.topology.depth(level)
        # Per card model, its islands' cards, largest first: how few islands a gang can span.
        cards: dict[str, collections.Counter[topology.DomainId]] = collections.defaultdict(collections.Counter)
        for i, node in enumerate(cluster.nodes):
            cards[node.model][cluster.path(i)[: self.depth + 1]] += node.card_count
        self.island_cards = {model: sorted(c.values(), reverse=True) for model, c in cards.items()}

    def finish(self, gang: str) -> None:
        for pod in self.running.pop(gang).pods:
            self.ledger.release(pod)

    def apply(self, result: plan.Plan, now: float) -> list[tuple[str, float, int]]:
        """Evictions, then placements; returns (gang, duration, epoch) of every gang started."""
        for eviction in result.evictions:
            running = self.running.get(eviction.gang)
            if running is None:
                raise ValueError(f"the plan at t={now} evicts gang {eviction.gang}, which is not running")
            self.lost_card_seconds += eviction.lost_card_seconds
            if eviction.whole:
                gang = running.gang.name
                self.finish(gang)
                self.queue[gang] = self.arrivals[gang]  # back in line at its original place
                self.evicted[gang] += 1
            else:
                for pod in eviction.pods:
                    self.ledger.release(pod)
                left = tuple(p for p in running.pods if p not in set(eviction.pods))
                self.running[eviction.gang] = dataclasses.replace(running, pods=left)
                self.shrinks += 1
        started = []
        for gang, allocations in result.placed.items():
            if gang not in self.queue:
                raise ValueError(f"the plan at t={now} places gang {gang}, which is not pending")
            arrival = self.queue.pop(gang)
            _check_pods(arrival.gang, allocations)
            for allocation in allocations:
                self.ledger.allocate(allocation)
            self.running[gang] = plan.Running(arrival.gang, tuple(a.pod for a in allocations), started_at=now)
            self.epoch[gang] = epoch = self.epoch.get(gang, 0) + 1
            self.first_start.setdefault(gang, now)
            self.count_islands(allocations)
            started.append((gang, arrival.duration, epoch))
        return started

    def count_islands(self, allocations: Sequence[ledger_.Allocation]) -> None:
        nodes = {a.node for a in allocations if a.shares} or {a.node for a in allocations}
        islands = {self.ledger.cluster.path(i)[: self.depth + 1] for i in nodes}
        self.placements += 1
        self.single += len(islands) == 1
        if len(nodes) > 1:
            self.multi_node += 1
            self.multi_node_single += len(islands) == 1
            cards = -(-sum(a.milli for a in allocations) // devices.MILLI_PER_CARD)
            self.multi_node_fewest += len(islands) <= self.fewest_islands(cards, nodes)

    def fewest_islands(self, cards: int, nodes: set[int]) -> int:
        """How few islands of the placed model could hold ``cards`` cards, counting islands whole."""
        model = self.ledger.cluster.nodes[next(iter(nodes))].model
        held = itertools.accumulate(self.island_cards.get(model, ()))
        return next((k for k, total in enumerate(held, 1) if total >= cards), len(nodes))


def _check_pods(gang: workload.Gang, allocations: Sequence[ledger_.Allocation]) -> None:
    names = {p.name for p in gang.pods()}
    strangers = [a.pod for a in allocations if a.pod not in names]
    if strangers:
        raise ValueError(f"the plan places pods {strangers[:3]} under gang {gang.name}, which has no such pods")
    if len({a.pod for a in allocations}) < gang.min_member:  # type: ignore[operator]
        raise ValueError(f"the plan places {len(allocations)} pods of gang {gang.name}, below min_member")


def _pct(part: int, whole: int) -> float | None:
    return part / whole * 100 if whole else None


def compare(
    arrivals: Sequence[gangs.GangArrival],
    cluster: cluster_.Cluster,
    names: Sequence[str],
    *,
    config: plan.Config | None = None,
    jobs: int | None = None,
    period_s: float = 0.0,
) -> dict[str, Result]:
    """``replay`` under each scheduler of ``names``, in up to ``jobs`` processes (default: one per core).

    Every cycle gets ``config`` (default ``plan.Config()``); ``period_s`` as in ``replay``.
    Raises ``ValueError`` before any run for an unknown or unavailable scheduler.
    """
    for name in names:
        scheduler(name)
    config = config or plan.Config()
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(names)))
    if jobs == 1:
        return {name: replay(arrivals, cluster, name, config=config, period_s=period_s) for name in names}
    # Workers get the inputs once, at start (forked where possible): the models hold mapping
    # proxies, which do not pickle.
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_init, initargs=(arrivals, cluster, config, period_s)
    ) as pool:
        return dict(zip(names, pool.map(_replay, names), strict=True))


_WORKER: tuple[Sequence[gangs.GangArrival], cluster_.Cluster, plan.Config, float] | None = None


def _init(
    arrivals: Sequence[gangs.GangArrival], cluster: cluster_.Cluster, config: plan.Config, period_s: float
) -> None:
    global _WORKER
    _WORKER = (arrivals, cluster, config, period_s)


def _replay(name: str) -> Result:
    assert _WORKER is not None
    arrivals, cluster, config, period_s = _WORKER
    return replay(arrivals, cluster, name, config=config, period_s=period_s)
