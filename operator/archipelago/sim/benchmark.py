"""One scheduling cycle on a generated cluster, measured: what ``archipelago bench cycle`` runs."""

from __future__ import annotations

import random
import resource
import sys
import time
from typing import Any

from archipelago import cycle
from archipelago.placement import plan
from archipelago.sim import synthetic


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``getrusage``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_cycle(
    cards: int, pending_pods: int, *, seed: int = 0, budget_s: float = 1.0, solver: bool = True
) -> dict[str, Any]:
    """Generate an island cluster of ``cards`` cards, 30-60% busy, and about ``pending_pods``
    pending pods in gangs; time one ``cycle.run`` on it.

    Returns ``cycle_seconds``, ``pods_per_second`` (pending pods decided per second: placed or
    given a reason), ``pods_placed``, ``gangs``, ``gangs_placed``, ``evictions``,
    ``peak_rss_mib`` (whole process) and the solver's figures.
    """
    rng = random.Random(seed)
    cluster = synthetic.island_cluster(cards)
    snapshot = synthetic.busy_snapshot(cluster, rng)
    batch = synthetic.pending_batch(cluster, pending_pods, rng)
    pods = sum(g.size for g in batch)
    started = time.perf_counter()
    result = cycle.run(snapshot, batch, plan.Config(budget_s=budget_s, seed=seed, solver=solver))
    seconds = time.perf_counter() - started
    return {
        "cards": cluster.total_cards,
        "nodes": len(cluster),
        "pending_pods": pods,
        "gangs": len(batch),
        "cycle_seconds": round(seconds, 4),
        "pods_per_second": round(pods / seconds, 1),
        "pods_placed": result.pods_placed,
        "gangs_placed": len(result.placed),
        "evictions": len(result.evictions),
        "solver_status": result.stats.solver_status,
        "solver_variables": result.stats.variables,
        "plan_from": result.stats.used,
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }
