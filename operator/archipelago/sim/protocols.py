"""Evaluation protocols: the order pods arrive in, and what is measured as they do.

``fgd`` is the protocol of the FGD paper's simulator, step by step as written in
``../shared/traces/README.md``: one pod at a time, no departures, demand tuned to a ratio of
capacity. ``replay`` follows the trace's own creation and deletion times.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence

import numpy as np

from archipelago import policies, workload
from archipelago.cluster import ledger as ledger_
from archipelago.policies import fgd, scoring
from archipelago.sim import scenario as scenario_

PROTOCOLS = ("fgd", "replay")
KPI_POINTS = (100, 130)


@dataclasses.dataclass
class RunResult:
    """What one policy did on one seed.

    ``curve`` maps arrived demand (% of capacity, integer) to the mean allocation (% of
    capacity) over the events at that demand; ``kpi(100)`` is the paper's KPI(100).
    ``decisions_ns`` holds the wall time of every placement decision.
    """

    policy: str
    seed: int
    pods: int
    failed: int
    curve: dict[int, float]
    decisions_ns: np.ndarray
    fragmented_milli: float | None
    alloc_time_mean_pct: float | None = None

    def kpi(self, point: int) -> float | None:
        return self.curve.get(point)


class _Curve:
    """Allocation recorded after every event, bucketed by arrived demand (README step 9).

    On a small cluster one large pod can move arrived demand past whole buckets; a bucket that
    never gets an event of its own takes the allocation from before the first pod that jumped
    over it, the state while demand passed through it.
    The openb trace never skips (its largest pod is 0.13% of capacity).
    """

    def __init__(self, capacity_milli: int) -> None:
        self.capacity = capacity_milli
        self.sums: dict[int, float] = {}
        self.counts: dict[int, int] = {}
        self.passed: dict[int, float] = {}  # skipped buckets: the allocation while demand passed
        self.last = (0, 0.0)  # (bucket, allocation %) of the previous event; nothing arrived yet

    def bucket(self, arrived_milli: int) -> int:
        return round(arrived_milli / self.capacity * 100)

    def record(self, arrived_milli: int, allocated_milli: int) -> None:
        bucket = self.bucket(arrived_milli)
        alloc = round(allocated_milli / self.capacity * 100, 2)
        previous, before = self.last
        for skipped in range(previous + 1, bucket):
            self.passed.setdefault(skipped, before)
        self.sums[bucket] = self.sums.get(bucket, 0.0) + alloc
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        self.last = (bucket, alloc)

    def means(self) -> dict[int, float]:
        """Mean allocation per bucket; a bucket with no event of its own gets its passed value."""
        means = {**self.passed, **{b: self.sums[b] / self.counts[b] for b in self.sums}}
        return dict(sorted(means.items()))


def fgd_arrivals(
    requests: Sequence[workload.PodRequest], capacity_milli: int, ratio: float, rng: random.Random
) -> list[workload.PodRequest]:
    """The FGD protocol's arrival order, tuned to ``ratio`` x capacity (README steps 2-3).

    Shuffle the name-sorted pods; then append uniform draws (with replacement) from the
    name-sorted list until the next draw's per-card milli would take total demand past
    ``ratio * capacity``. That draw is discarded. If the trace alone exceeds the target, pods
    at random positions are removed instead. Copies are renamed ``<name>~<k>``.
    """
    ordered = sorted(requests, key=lambda p: p.name)
    arrivals = ordered.copy()
    rng.shuffle(arrivals)
    target = ratio * capacity_milli
    demand = sum(p.milli for p in arrivals)
    if demand > target:
        while demand > target and arrivals:
            demand -= arrivals.pop(rng.randrange(len(arrivals))).milli
        return arrivals
    copies = 0
    if not any(p.milli for p in ordered):
        return arrivals  # no draw could ever reach the target: nothing to tune
    while True:
        drawn = ordered[rng.randrange(len(ordered))]
        if demand + drawn.milli_per_card > target:
            break
        demand += drawn.milli
        arrivals.append(dataclasses.replace(drawn, name=f"{drawn.name}~{copies}"))
        copies += 1
    return arrivals


def kpi_window_end(arrivals: Sequence[workload.PodRequest], capacity_milli: int, point: int = KPI_POINTS[0]) -> int:
    """How many pods have arrived when arrived demand (rounded %) is about to pass ``point``."""
    arrived = 0
    for k, pod in enumerate(arrivals):
        arrived += pod.milli
        if round(arrived / capacity_milli * 100) > point:
            return k
    return len(arrivals)


def tie_break_rank(n: int, rng: random.Random) -> np.ndarray:
    """A random permutation of the nodes, as ranks: node ``i`` wins ties over higher ranks."""
    order = list(range(n))
    rng.shuffle(order)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


def _start(
    scn: scenario_.Scenario, policy_name: str, seed: int, rng: random.Random
) -> tuple[ledger_.Ledger, scoring.Policy, fgd.Fragmentation]:
    """An empty ledger, the policy with its tie-break rank drawn from ``rng``, and the measure
    every policy's fragmentation is reported in (FGD's, over FGD's profile)."""
    requests = scn.requests()
    rank = tie_break_rank(len(scn.cluster), rng)
    ledger = ledger_.Ledger(scn.cluster)
    context = scoring.Context(profile=policies.profile(policy_name, requests), rank=rank, seed=seed)
    policy = policies.create(policy_name, ledger, context)
    return ledger, policy, fgd.Fragmentation(workload.typical_tasks(requests))


def _decide(policy: scoring.Policy, pod: workload.PodRequest) -> tuple[scoring.Placement | None, int]:
    start = time.perf_counter_ns()
    placement = policy.place(pod)
    return placement, time.perf_counter_ns() - start


def check(scn: scenario_.Scenario, protocol: str) -> None:
    """Raise ``ValueError`` if ``protocol`` cannot run on ``scn``, naming what is missing."""
    if scn.capacity_milli == 0:
        raise ValueError("the cluster has no healthy cards: nothing to place on")
    if protocol == "replay":
        untimed = [p.request.name for p in scn.pods if p.created is None]
        if untimed:
            raise ValueError(
                f"replay needs creation times; {len(untimed)} pods have none (first: {untimed[0]}); "
                "use --protocol fgd for traces without times"
            )


def run_fgd(
    scn: scenario_.Scenario,
    policy_name: str,
    seed: int,
    *,
    tune: float = 1.3,
    tick: Callable[[], None] | None = None,
) -> RunResult:
    """One seed of the FGD protocol (README steps 1-9). Raises ``ValueError`` as ``check``."""
    check(scn, "fgd")
    requests = scn.requests()
    rng = random.Random(seed)
    capacity = scn.capacity_milli
    arrivals = fgd_arrivals(requests, capacity, tune, rng)
    ledger, policy, fragmentation = _start(scn, policy_name, seed, rng)

    curve = _Curve(capacity)
    decisions = np.empty(len(arrivals), dtype=np.int64)
    arrived = failed = 0
    window_end = kpi_window_end(arrivals, capacity)
    fragmented: float | None = None
    for k, pod in enumerate(arrivals):
        if k == window_end:
            fragmented = fgd.fragmented_milli(ledger, fragmentation)
        placement, decisions[k] = _decide(policy, pod)
        arrived += pod.milli
        if placement is None:
            failed += 1
        else:
            ledger.allocate(scoring.allocation(pod, placement))
        curve.record(arrived, ledger.allocated_milli)
        if tick is not None:
            tick()
    if fragmented is None:
        fragmented = fgd.fragmented_milli(ledger, fragmentation)
    return RunResult(policy_name, seed, len(arrivals), failed, curve.means(), decisions, fragmented)


def run_replay(
    scn: scenario_.Scenario,
    policy_name: str,
    seed: int,
    *,
    tick: Callable[[], None] | None = None,
) -> RunResult:
    """Replay the trace's own times: pods arrive at ``created`` and leave at ``deleted``.

    A pod that fits nowhere on arrival fails and is dropped (no queue). Departures at a given
    time happen before arrivals at that time. Arrived demand is the demand of pods that have
    arrived and not yet reached their deletion time, placed or not, so KPI(100) is the mean
    allocation while offered load is at 100% of capacity. ``alloc_time_mean_pct`` is the
    time-weighted mean allocation from the first to the last arrival (the drain afterwards
    would only dilute it).

    Raises ``ValueError`` if a pod has no creation time.
    """
    check(scn, "replay")
    capacity = scn.capacity_milli
    ledger, policy, fragmentation = _start(scn, policy_name, seed, random.Random(seed))

    # (time, phase, order, pod). At one time stamp: departures of older pods (phase 0), then
    # arrivals (1), then pods that leave at the moment they arrive (2).
    events: list[tuple[float, int, int, scenario_.TracePod]] = []
    for k, p in enumerate(sorted(scn.pods, key=lambda p: (p.created, p.request.name))):
        events.append((p.created, 1, k, p))  # type: ignore[arg-type]
        if p.deleted is not None and p.deleted >= p.created:  # type: ignore[operator]
            events.append((p.deleted, 0 if p.deleted > p.created else 2, k, p))  # type: ignore[operator]
    events.sort(key=lambda e: e[:3])

    curve = _Curve(capacity)
    decisions: list[int] = []
    offered = failed = 0
    area = 0.0
    last_time = events[0][0] if events else 0.0
    last_arrival = max((p.created for p in scn.pods), default=0.0)
    peak_bucket_seen = False
    fragmented: float | None = None
    for when, phase, _, p in events:
        if when <= last_arrival:
            area += ledger.allocated_milli * (when - last_time)
            last_time = when
        pod = p.request
        if phase != 1:
            offered -= pod.milli
            if pod.name in ledger:
                ledger.release(pod.name)
            continue
        placement, spent = _decide(policy, pod)
        decisions.append(spent)
        offered += pod.milli
        if placement is None:
            failed += 1
        else:
            ledger.allocate(scoring.allocation(pod, placement))
        curve.record(offered, ledger.allocated_milli)
        if curve.bucket(offered) == KPI_POINTS[0]:
            peak_bucket_seen = True
        elif peak_bucket_seen and fragmented is None:
            fragmented = fgd.fragmented_milli(ledger, fragmentation)
        if tick is not None:
            tick()
    span = (last_arrival - events[0][0]) if events else 0.0
    mean_pct = area / span / capacity * 100 if span > 0 else ledger.allocated_milli / capacity * 100
    if fragmented is None:
        fragmented = fgd.fragmented_milli(ledger, fragmentation)
    return RunResult(
        policy_name,
        seed,
        len(decisions),
        failed,
        curve.means(),
        np.asarray(decisions, dtype=np.int64),
        fragmented,
        alloc_time_mean_pct=mean_pct,
    )
