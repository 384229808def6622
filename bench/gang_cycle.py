"""Benchmark: one gang-scheduling cycle at scale, the solver's gain over its greedy hint, and
victim search at 1,000 nodes.

    python bench/gang_cycle.py [--seeds 3] [--out FILE]

1. Scaling: ``archipelago bench cycle --json`` at 1k, 5k, 10k and 20k cards (one pending pod
   per 10 cards), each seed in a fresh process so peak RSS is its own. The greedy placer alone
   (``--greedy-only``) is the baseline measured in the same run.
2. Solver worth: 40 hard batches (``synthetic.hard_case``: required islands under contention,
   HCCS ring rules, gangs that accept two GPU models). Priority-weighted admitted cards and
   islands spanned, greedy hint against the plan the cycle returns.
3. Preemption: 1,000 eight-card servers full of preemptible low-priority gangs; one
   high-priority gang of 64 or 256 cards arrives; the cycle must choose victims in budget.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import random
import statistics
import subprocess
import sys
import time

SIZES = (1_000, 5_000, 10_000, 20_000)


def scaling(seeds: int) -> list[str]:
    rows = [
        "| cards | nodes | pending pods | cycle s, mean (max) | greedy-only s, mean | pods/s | pods placed | "
        "peak RSS MiB | plan from |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cards in SIZES:
        runs, greedy = [], []
        for seed in range(seeds):
            for only, out in ((False, runs), (True, greedy)):
                cmd = [sys.executable, "-m", "archipelago", "bench", "cycle", "--cards", str(cards)]
                cmd += ["--pending-pods", str(cards // 10), "--seed", str(seed), "--json"]
                cmd += ["--greedy-only"] if only else []
                out.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
        seconds = [r["cycle_seconds"] for r in runs]
        rows.append(
            f"| {runs[0]['cards']:,} | {runs[0]['nodes']:,} | {statistics.mean(r['pending_pods'] for r in runs):.0f} | "
            f"{statistics.mean(seconds):.3f} ({max(seconds):.3f}) | "
            f"{statistics.mean(r['cycle_seconds'] for r in greedy):.3f} | "
            f"{statistics.mean(r['pods_per_second'] for r in runs):,.0f} | "
            f"{statistics.mean(r['pods_placed'] for r in runs):.0f} | {max(r['peak_rss_mib'] for r in runs):.0f} | "
            f"{', '.join(sorted({r['plan_from'] for r in runs}))} |"
        )
    return rows


def solver_worth(cases: int) -> list[str]:
    from archipelago import cycle
    from archipelago.placement import objective, plan, validate
    from archipelago.sim import synthetic

    better = same = worse = 0
    greedy_cards = solver_cards = greedy_value = solver_value = 0
    greedy_extra = solver_extra = 0
    seconds = []
    for seed in range(cases):
        snapshot, batch = synthetic.hard_case(seed)
        hint = cycle.run(snapshot, batch, plan.Config(solver=False))
        chosen = cycle.run(snapshot, batch, plan.Config(seed=seed))
        if validate.violations(snapshot, batch, chosen):
            raise SystemExit(f"seed {seed}: the plan breaks a rule: {validate.violations(snapshot, batch, chosen)}")
        weights = objective.tier_weights(batch)
        by_name = {g.name: g for g in batch}
        a = objective.score(snapshot.ledger, by_name, hint.placed, weights)
        b = objective.score(snapshot.ledger, by_name, chosen.placed, weights)
        better += b.key() > a.key()
        same += b.key() == a.key()
        worse += b.key() < a.key()
        greedy_value += a.value
        solver_value += b.value
        greedy_extra += a.extra_domains
        solver_extra += b.extra_domains
        greedy_cards += sum(len(x.shares) for al in hint.placed.values() for x in al)
        solver_cards += sum(len(x.shares) for al in chosen.placed.values() for x in al)
        seconds.append(chosen.stats.seconds)
    return [
        "| batches | solver better / equal / worse | admitted cards, greedy → solver | "
        "priority-weighted value, solver / greedy | extra islands spanned, greedy → solver | cycle s, mean (max) |",
        "|---|---|---|---|---|---|",
        f"| {cases} | {better} / {same} / {worse} | "
        f"{greedy_cards} → {solver_cards} (+{solver_cards / greedy_cards - 1:.1%}) "
        f"| {solver_value / greedy_value:.3f} | {greedy_extra} → {solver_extra} | "
        f"{statistics.mean(seconds):.3f} ({max(seconds):.3f}) |",
    ]


def preemption(seeds: int) -> list[str]:
    from archipelago import cycle, workload
    from archipelago.cluster import topology
    from archipelago.placement import plan, validate
    from archipelago.sim import synthetic

    rows = [
        "| nodes | running gangs | high-priority gang | cycle s, mean (max) | victims | lost card-hours | placed |",
        "|---|---|---|---|---|---|---|",
    ]
    for cards in (64, 256):
        times, victims, lost, placed = [], [], [], []
        for seed in range(seeds):
            rng = random.Random(seed)
            cluster = synthetic.island_cluster(8_000)
            snapshot = synthetic.busy_snapshot(cluster, rng, busy=(1.0, 1.0))
            running = {
                name: plan.Running(
                    workload.Gang(r.gang.name, r.gang.pod_sets, priority=0, preemptible=True, topology=r.gang.topology),
                    r.pods,
                    r.started_at,
                )
                for name, r in snapshot.running.items()
            }
            snapshot = plan.Snapshot(snapshot.ledger, running, now=0.0)
            urgent = synthetic.gang("urgent", cards, "H800", rng, priority=1000)
            urgent = workload.Gang(
                "urgent",
                urgent.pod_sets,
                priority=1000,
                topology=workload.TopologyRequest(topology.ISLAND, workload.TopologyMode.REQUIRED),
                queued_at=-synthetic.WAITED_S,  # waited past the preemption delay
            )
            started = time.perf_counter()
            result = cycle.run(snapshot, [urgent], plan.Config(seed=seed))
            times.append(time.perf_counter() - started)
            assert not validate.violations(snapshot, [urgent], result)
            victims.append(len(result.evictions))
            lost.append(sum(e.lost_card_seconds for e in result.evictions) / 3600)
            placed.append("urgent" in result.placed)
        rows.append(
            f"| 1,000 | {len(running)} | {cards} x H800, one island | "
            f"{statistics.mean(times):.3f} ({max(times):.3f}) | "
            f"{statistics.mean(victims):.1f} | {statistics.mean(lost):.0f} | {sum(placed)}/{seeds} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()
    lines = [
        f"Machine: {platform.machine()}, Python {platform.python_version()}, cycle budget 1.0 s.",
        "",
        "**Scaling** (one cycle; islands of 32 eight-card servers, 30-60% busy, gangs of 1-512 cards)",
        "",
        *scaling(args.seeds),
        "",
        "**Solver worth on hard batches**",
        "",
        *solver_worth(args.cases),
        "",
        "**Preemption at 1,000 nodes** (every card held by preemptible priority-0 gangs)",
        "",
        *preemption(args.seeds),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
