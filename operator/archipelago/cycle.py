"""One scheduling cycle: from a snapshot and the pending gangs to a checked plan.

The operator and the simulator both call ``run``; it reads nothing global (the clock comes
in the snapshot) and never mutates the snapshot. Steps:

1. order the queue (priority, then arrival; under ``plan.Queueing.MOST_GANGS`` priority,
   then fewer cards, then arrival); a gang whose topology is ``preferred`` and which has waited
   less than ``config.spread_delay_s`` is placed as if it were ``required``, if one domain of
   its level could hold it;
2. place greedily on a private copy of the ledger: the hint and the fallback;
3. improve with CP-SAT in the time left, unless the greedy plan is already best possible,
   and keep whichever plan scores better (``objective.Score``); with
   ``plan.Queueing.BEST_EFFORT_FIFO`` only if it keeps the greedy plan's admissions that queue
   order protects (``model.kept``); under ``plan.Queueing.MOST_GANGS``, whose objective does
   not count pods, elastic gangs admitted short then grow into what room is left;
4. for gangs still waiting, in queue order, search the cheapest preemption while time lasts,
   once a gang has waited ``config.preemption_delay_s``, among gangs that have run at least
   ``config.preemption_exempt_s``; a gang that fits the room earlier evictions freed beyond
   their preemptor's needs takes it without evicting anyone;
5. explain every gang that still waits.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from archipelago import workload
from archipelago.placement import explain, greedy, model, objective, plan, pools, preempt

SOLVER_SHARE = 0.8
"""Share of the cycle budget the solver pass may use; decoding and explanations follow it."""
SOLVER_SHARE_WITH_VICTIMS = 0.6
"""Share of the cycle budget the solver pass may use when preemption may follow."""


def run(snapshot: plan.Snapshot, pending: Sequence[workload.Gang], config: plan.Config) -> plan.Plan:
    """Decide which of ``pending`` run now, where, and whom they preempt; explain the rest.

    Raises ``ValueError`` if a pending gang's name is also running or appears twice.
    """
    started = time.perf_counter()
    stats = plan.Stats()

    # 1. The queue, with the preferred gangs that still wait for one domain as required ones.
    names = [g.name for g in pending]
    if len(set(names)) != len(names) or set(names) & snapshot.running.keys():
        raise ValueError("pending gangs must have distinct names that are not running")
    base = pools.State(snapshot.ledger.copy(), pools.avoid_of(pending))  # the pool sums, computed once and copied
    held = _held_together(base, snapshot.now, pending, config.spread_delay_s)
    queue = greedy.order([held.get(g.name, g) for g in pending], config.queueing)
    by_name = {g.name: g for g in queue}
    weights = objective.tier_weights(queue, config.queueing)

    # 2. The greedy plan: hint and fallback.
    hint_state = base.copy()
    placed = greedy.run(hint_state, queue)
    state = hint_state
    best = objective.score(snapshot.ledger, by_name, placed, weights, config.queueing)
    stats.greedy_objective = stats.solver_objective = best.value
    stats.greedy_seconds = time.perf_counter() - started

    # 3. The solver pass, when it can still gain something. It leaves a quarter of the budget
    # to the victim search when there is anyone to preempt.
    share = SOLVER_SHARE_WITH_VICTIMS if any(r.gang.preemptible for r in snapshot.running.values()) else SOLVER_SHARE
    left = config.budget_s * share - (time.perf_counter() - started)
    if config.solver and queue and left > 0.02 and not _best_possible(queue, placed, best):
        solver_state = base.copy()
        units = model.items(solver_state, queue, weights)
        solution = model.solve(solver_state, units, placed, config, left)
        stats.solver_status, stats.variables = solution.status, solution.variables
        stats.build_seconds, stats.solve_seconds = solution.build_seconds, solution.solve_seconds
        if solution.counts:
            decoded = model.decode(solver_state, units, solution, config.queueing)
            score = objective.score(snapshot.ledger, by_name, decoded, weights, config.queueing)
            stats.solver_objective = score.value
            # BestEffortFIFO: within a priority the queue order stands, so a plan that drops a
            # gang the greedy plan admitted, with no higher-priority gang waiting, is not taken.
            fifo = config.queueing is plan.Queueing.BEST_EFFORT_FIFO
            if score.key() > best.key() and (not fifo or model.kept(units, placed) <= decoded.keys()):
                placed, state, best, stats.used = decoded, solver_state, score, "solver"

    # Under MostGangs an admitted gang is worth the same however many pods it runs, so an
    # elastic gang the solver admitted short takes what room is left.
    if not objective.by_cards(config.queueing):
        for gang in queue:
            if gang.name in placed and len(placed[gang.name]) < gang.size:
                placed[gang.name] = greedy.grow(state, gang, placed[gang.name])

    # 4. Preemption for what still waits, highest priority first.
    evictions: list[plan.Eviction] = []
    evicted: set[str] = set()
    tried: set[str] = set()
    delayed: set[str] = set()  # may preempt, but has not waited config.preemption_delay_s yet
    failed: set[tuple] = set()  # (shape, evictions so far) of searches that found nothing
    no_room: set[tuple] = set()  # (shape, evictions so far) of gangs the freed room did not fit
    # Preemptible running gangs, lowest priority first: does a waiting gang have any candidate?
    preemptible = sorted((r for r in snapshot.running.values() if r.gang.preemptible), key=lambda r: r.gang.priority)
    if config.preemption and preemptible:
        longest = 0.01
        for gang in queue:
            if gang.name in placed:
                continue
            # Room an earlier gang's evictions freed beyond its own needs goes to whoever fits.
            # Only evictions add room, so a shape that did not fit stays out until the next one.
            if evictions and (room_key := (gang.shape(), len(evictions))) not in no_room:
                allocations = greedy.place(state, gang)
                if allocations is not None:
                    placed[gang.name] = allocations
                    continue
                no_room.add(room_key)
            left = config.budget_s * 0.85 - (time.perf_counter() - started)
            if left <= longest:
                continue
            lowest = next((r for r in preemptible if r.gang.name not in evicted and r.pods), None)
            if lowest is None or lowest.gang.priority >= gang.priority:
                continue
            if snapshot.now - gang.queued_at < config.preemption_delay_s:
                delayed.add(gang.name)
                continue
            tried.add(gang.name)
            # Later gangs have no higher priority, so fewer candidates and no more room: one of
            # the same shape fails too, until an eviction frees something.
            key = (gang.shape(), len(evictions))
            if key in failed:
                continue
            searching = time.perf_counter()
            outcome = preempt.search(state, snapshot, gang, evicted, config, left)
            longest = max(longest, time.perf_counter() - searching)
            if outcome is None:
                failed.add(key)
            else:
                evictions.extend(outcome.evictions)
                evicted.update(e.gang for e in outcome.evictions)
                placed[gang.name] = outcome.allocations

    # 5. A reason for every gang that waits.
    waiting: dict[str, plan.Wait] = {}
    reasons: dict[tuple, plan.Wait] = {}  # gangs of one shape wait for one reason
    for g in queue:  # base is still the state before this cycle's plan
        if g.name not in placed:
            key = (g.shape(), g.name in tried, g.name in delayed, g.name in held)
            if key not in reasons:
                reasons[key] = explain.reason(
                    base,
                    state,
                    snapshot,
                    g,
                    preemption_tried=g.name in tried,
                    preemption_delay_s=config.preemption_delay_s if g.name in delayed else None,
                    preemption_exempt_s=config.preemption_exempt_s,
                    spread_delay_s=config.spread_delay_s if g.name in held else None,
                )
            waiting[g.name] = dataclasses.replace(reasons[key], gang=g.name)
    stats.seconds = time.perf_counter() - started
    retry = [by_name[g].queued_at + config.preemption_delay_s for g in delayed]
    retry += [by_name[g].queued_at + config.spread_delay_s for g in held if g in waiting]
    # A gang preemption could not help yet may preempt once a victim's exemption ends.
    top = max((by_name[g].priority for g in tried if g not in placed), default=None)
    if top is not None:
        ends = (preempt.exempt_until(r, config.preemption_exempt_s) for r in preemptible if r.gang.priority < top)
        retry += [end for end in ends if end > snapshot.now]
    return plan.Plan(dict(placed), evictions, waiting, stats, min(retry, default=None))


def _held_together(
    state: pools.State, now: float, pending: Sequence[workload.Gang], delay_s: float
) -> dict[str, workload.Gang]:
    """The gangs that wait for one domain of their ``preferred`` level this cycle (Slurm's
    ``--switches=1@max-time``), each as the same gang with that level ``required``: those of
    more than one pod, on a label level of the cluster, queued less than ``delay_s`` seconds
    before ``now``, and which one domain of the level could hold, empty."""
    held: dict[str, workload.Gang] = {}
    if not delay_s:
        return held
    levels = state.ledger.cluster.topology.levels
    fits: dict[tuple, bool] = {}  # per shape: could one domain hold it?
    for gang in pending:
        request = gang.topology
        if request is None or request.required or request.level not in levels or gang.size < 2:
            continue
        if now - gang.queued_at >= delay_s:
            continue
        together = dataclasses.replace(gang, topology=dataclasses.replace(request, mode=workload.TopologyMode.REQUIRED))
        shape = together.shape()
        if shape not in fits:
            fits[shape] = explain.permanent(state, together) is None
        if fits[shape]:
            held[gang.name] = together
    return held


def _best_possible(queue: Sequence[workload.Gang], placed: dict, score: objective.Score) -> bool:
    """Every gang placed with all its pods (an elastic one may run short), no preferred gang
    spread and no server broken: nothing left to gain."""
    whole = all(len(placed.get(g.name, ())) == g.size for g in queue)
    return whole and score.extra_domains == 0 and score.broken_nodes == 0
