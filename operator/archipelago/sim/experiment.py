"""Run policies x seeds of one protocol on one scenario, in parallel, and summarise per policy."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import random
import statistics
from collections.abc import Callable, Sequence

import numpy as np

from archipelago import policies
from archipelago.sim import bound as bound_
from archipelago.sim import protocols, scenario


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to run: ``policies`` x ``seeds`` of ``protocol``; ``tune`` is the fgd protocol's ratio."""

    protocol: str = "fgd"
    policies: tuple[str, ...] = policies.NAMES
    seeds: tuple[int, ...] = (42, 43, 44)
    tune: float = 1.3
    bound: bool = False

    def __post_init__(self) -> None:
        if self.protocol not in protocols.PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose from {', '.join(protocols.PROTOCOLS)}")
        unknown = [p for p in self.policies if p not in policies.NAMES]
        if unknown:
            raise ValueError(f"unknown policy {unknown[0]!r}; choose from {', '.join(policies.NAMES)}")
        if not self.policies or not self.seeds:
            raise ValueError("need at least one policy and one seed")
        if self.tune <= 0:
            raise ValueError(f"tune must be positive, got {self.tune}")
        if self.bound and self.protocol != "fgd":
            raise ValueError("the bound is computed at the fgd protocol's KPI(100) point; use --protocol fgd")


@dataclasses.dataclass(frozen=True)
class Summary:
    """One policy over all seeds. Allocation figures are % of card capacity; None if never reached."""

    policy: str
    kpi100: float | None
    kpi130: float | None
    kpi100_min: float | None
    kpi100_max: float | None
    failed: float
    fragmented_milli: float | None
    decision_ms_p50: float
    decision_ms_p99: float
    alloc_time_mean_pct: float | None
    bound100: float | None
    runs: tuple[protocols.RunResult, ...]

    @property
    def of_bound(self) -> float | None:
        """KPI(100) as a share of the LP bound, in %."""
        if self.kpi100 is None or not self.bound100:
            return None
        return self.kpi100 / self.bound100 * 100


@dataclasses.dataclass(frozen=True)
class Results:
    scenario: str
    plan: Plan
    summaries: dict[str, Summary]
    bounds: dict[int, bound_.Bound]

    def gap_closed(self, policy: str, baseline: str = "fgd") -> float | None:
        """Share (%) of ``baseline``'s gap to the bound at KPI(100) that ``policy`` closed.

        100% means the policy reached the bound; 0% means no better than the baseline.
        """
        if baseline not in self.summaries:
            return None
        mine, base = self.summaries[policy], self.summaries[baseline]
        if mine.kpi100 is None or base.kpi100 is None or mine.bound100 is None:
            return None
        gap = mine.bound100 - base.kpi100
        return (mine.kpi100 - base.kpi100) / gap * 100 if gap > 0 else None


Progress = Callable[[int, int], None]
"""Called with (runs done, runs in all) as runs finish."""


def run(scn: scenario.Scenario, plan: Plan, *, jobs: int | None = None, progress: Progress | None = None) -> Results:
    """Every (policy, seed) run of ``plan``, in up to ``jobs`` processes (default: one per core).

    Raises ``ValueError`` before any run starts if the protocol cannot run on ``scn``.
    """
    protocols.check(scn, plan.protocol)
    tasks = [(policy, seed) for policy in plan.policies for seed in plan.seeds]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
    done: list[protocols.RunResult] = []
    if jobs == 1:
        _init(scn, plan)
        for task in tasks:
            done.append(_run(task))
            if progress:
                progress(len(done), len(tasks))
    else:
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_init, initargs=(scn, plan)
        ) as pool:
            for result in pool.map(_run, tasks):
                done.append(result)
                if progress:
                    progress(len(done), len(tasks))
    bounds = {seed: kpi_bound(scn, seed, plan.tune) for seed in plan.seeds} if plan.bound else {}
    summaries = {policy: summarise(policy, [r for r in done if r.policy == policy], bounds) for policy in plan.policies}
    return Results(scn.name, plan, summaries, bounds)


def kpi_bound(scn: scenario.Scenario, seed: int, tune: float) -> bound_.Bound:
    """The LP bound for the pods arrived by the end of the KPI(100) window of ``seed``."""
    capacity = scn.capacity_milli
    arrivals = protocols.fgd_arrivals(scn.requests(), capacity, tune, random.Random(seed))
    return bound_.allocation_bound(scn.cluster, arrivals[: protocols.kpi_window_end(arrivals, capacity)])


def summarise(policy: str, runs: Sequence[protocols.RunResult], bounds: dict[int, bound_.Bound]) -> Summary:
    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.fmean(present) if present and len(present) == len(values) else None

    k100 = [r.kpi(100) for r in runs]
    reached = [v for v in k100 if v is not None]
    decisions = np.concatenate([r.decisions_ns for r in runs]) / 1e6 if runs else np.zeros(1)
    return Summary(
        policy=policy,
        kpi100=mean(k100),
        kpi130=mean([r.kpi(130) for r in runs]),
        kpi100_min=min(reached) if reached else None,
        kpi100_max=max(reached) if reached else None,
        failed=statistics.fmean(r.failed for r in runs),
        fragmented_milli=mean([r.fragmented_milli for r in runs]),
        decision_ms_p50=float(np.percentile(decisions, 50)),
        decision_ms_p99=float(np.percentile(decisions, 99)),
        alloc_time_mean_pct=mean([r.alloc_time_mean_pct for r in runs]),
        bound100=statistics.fmean(b.pct for b in bounds.values()) if bounds else None,
        runs=tuple(sorted(runs, key=lambda r: r.seed)),
    )


_WORKER: tuple[scenario.Scenario, Plan] | None = None


def _init(scn: scenario.Scenario, plan: Plan) -> None:
    global _WORKER
    _WORKER = (scn, plan)


def _run(task: tuple[str, int]) -> protocols.RunResult:
    assert _WORKER is not None
    scn, plan = _WORKER
    policy, seed = task
    if plan.protocol == "replay":
        return protocols.run_replay(scn, policy, seed)
    return protocols.run_fgd(scn, policy, seed, tune=plan.tune)
