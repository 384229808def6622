"""Benchmark: the gang replay, Archipelago against greedy first-fit and a Volcano-like scheduler,
with queueing delay broken down by priority class and gang size.

    python bench/gang_replay.py [--nodes CSV] [--stride K] [--gangs N] [--seeds 1,2] [--period 1]
        [--preemption-delay 30] [--preemption-exempt 0] [--spread-delay 0] [--no-preemption]
        [--queueing BestEffortFIFO]
        [--model H800] [--out FILE]

The cluster is the node list (default: the spot-GPU trace's ``node_info_df.csv`` under
``../shared/traces``), every K-th node kept, with islands of 32 eight-card servers laid over
it (``gangs.island_cluster``). Gangs are generated as ``archipelago simulate --workload gangs``
does, at load 1.2. Each seed replays the same arrivals under the three schedulers, one after
another in this process, so that the CP-SAT budget of Archipelago's cycles is not shared with
a baseline running beside it. ``--model`` keeps one card model's nodes and the gangs that ask
for it, from the same arrivals as the whole run. The overall figures are those of
``archipelago simulate --json``; the breakdown shows who waits: mean and p95 delay (s) per
priority class (``high`` 1000, ``normal`` 100, ``spot`` 0 and preemptible) and size (cards).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import pathlib
import platform
import sys
import time

import numpy as np

from archipelago.placement import plan
from archipelago.sim import gang_replay, gangs, traces

ROOT = pathlib.Path(__file__).resolve().parent.parent
NODES = ROOT.parent / "shared" / "traces" / "alibaba-spot-gpu-v2026" / "node_info_df.csv"
CLASSES = {1000: "high", 100: "normal", 0: "spot"}
SIZES = ((8, "1-8"), (16, "16"), (256, "32-256"), (None, "512+"))


def size_class(cards: int) -> str:
    return next(name for bound, name in SIZES if bound is None or cards <= bound)


def one_model(cluster, arrivals, model: str):
    """The nodes of ``model`` and the gangs that ask for it alone: one model's share of a run.

    Gangs never mix models here, and the islands are laid per model, so this share sees the
    same arrivals and the same islands as in the whole run. Raises ``SystemExit`` for a model
    the cluster does not have."""
    mine = [n for n in cluster.nodes if n.model == model]
    if not mine:
        sys.exit(f"no node of model {model!r}; the cluster has {', '.join(sorted(cluster.models()))}")
    kept = [a for a in arrivals if all(s.request.models == {model} for s in a.gang.pod_sets if s.request.cards)]
    return gangs.island_cluster(mine), kept


def one_seed(cluster, seed: int, count: int, period: float, config: plan.Config, model: str | None = None) -> list[str]:
    """The tables of one seed; every scheduler's cycles get ``config`` with this seed."""
    config = dataclasses.replace(config, seed=seed)
    arrivals = gangs.generate(seed, gangs=count, cluster=cluster, load=1.2)
    title = f"{count} gangs"
    if model is not None:
        cluster, arrivals = one_model(cluster, arrivals, model)
        title = f"the {len(arrivals)} {model} gangs of {count}, on its {cluster.total_cards:,} cards,"
    offered = gangs.offered_load(arrivals, cluster)
    delay, exempt = config.preemption_delay_s, config.preemption_exempt_s
    preempting = f"preemption delay {delay:g} s" if config.preemption else "Archipelago's preemption off"
    if config.preemption and exempt:
        preempting += f", none within a gang's first {exempt:g} s"
    if config.spread_delay_s:
        preempting += f", Archipelago's spread delay {config.spread_delay_s:g} s"
    if config.queueing is not plan.Config.queueing:
        preempting += f", Archipelago's queueing {config.queueing.value}"
    rows = [
        f"**Seed {seed}**: {title} offering {offered:.2f}x the cards, a cycle every {period:g} s, {preempting}",
        "",
        "| scheduler | GPU alloc % | one island % (multi-node) | fewest islands % | delay mean s | delay p95 s "
        "| preemptions | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    delays: dict[str, dict[tuple[str, str], list[float]]] = {}
    repeats: list[str] = []
    for name in gang_replay.SCHEDULERS:
        started = time.perf_counter()
        r = gang_replay.replay(arrivals, cluster, name, config=config, period_s=period)
        wall = time.perf_counter() - started
        island, fewest = (
            "-" if p is None else f"{p:.1f}" for p in (r.gangs_single_island_pct, r.gangs_fewest_islands_pct)
        )
        rows.append(
            f"| {name} | {r.gpu_alloc_pct:.1f} | {island} | {fewest} | {r.queue_delay_mean_s:,.0f} | "
            f"{r.queue_delay_p95_s:,.0f} | {r.preemptions} | {wall:.0f} |"
        )
        by_class: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        for a in arrivals:
            key = (CLASSES.get(a.gang.priority, str(a.gang.priority)), size_class(a.gang.cards))
            by_class[key].append(r.first_start.get(a.gang.name, r.end_s) - a.arrival)
        delays[name] = by_class
        if r.preemptions:
            repeats.append(
                f"{name}'s {r.preemptions} preemptions hit {r.gangs_preempted} gangs, one of them "
                f"{r.preemptions_max_per_gang} times, and lost {r.lost_card_seconds:,.0f} card-seconds of work."
            )
        print(rows[-1], file=sys.stderr, flush=True)
    rows += ["", *repeats] if repeats else []
    keys = sorted(delays["archipelago"], key=lambda k: (list(CLASSES.values()).index(k[0]), k[1]))
    rows += [
        "",
        "| class | size | gangs | " + " | ".join(f"{n} mean / p95 s" for n in gang_replay.SCHEDULERS) + " |",
        "|---|---|---|" + "---|" * len(gang_replay.SCHEDULERS),
    ]
    for key in keys:
        cells = []
        for name in gang_replay.SCHEDULERS:
            d = np.array(delays[name][key])
            cells.append(f"{d.mean():,.0f} / {np.percentile(d, 95):,.0f}")
        rows.append(f"| {key[0]} | {key[1]} | {len(delays['archipelago'][key])} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=pathlib.Path, default=NODES)
    parser.add_argument("--stride", type=int, default=1, help="keep every K-th node of the list")
    parser.add_argument("--gangs", type=int, default=5000)
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--period", type=float, default=1.0)
    parser.add_argument("--preemption-delay", type=float, default=plan.Config.preemption_delay_s)
    parser.add_argument("--preemption-exempt", type=float, default=plan.Config.preemption_exempt_s)
    parser.add_argument(
        "--spread-delay",
        type=float,
        default=plan.Config.spread_delay_s,
        help="seconds a Preferred gang waits for one island before it spreads (Archipelago only)",
    )
    parser.add_argument(
        "--no-preemption", action="store_true", help="Archipelago never preempts (to see what preemption costs)"
    )
    parser.add_argument(
        "--queueing",
        type=plan.Queueing,
        default=plan.Config.queueing,
        choices=list(plan.Queueing),
        metavar="|".join(q.value for q in plan.Queueing),
        help="Archipelago's order among gangs of one priority (default MostCards)",
    )
    parser.add_argument("--model", help="replay only this card model's nodes and the gangs that ask for it")
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()
    if not args.nodes.exists():
        sys.exit(f"{args.nodes} not found: give the spot-GPU node list with --nodes")
    cluster = gangs.island_cluster(traces.read_nodes_csv(args.nodes)[:: args.stride])
    command = " ".join(["python bench/gang_replay.py", *sys.argv[1:]])
    lines = [
        f"Command: `{command}` ({cluster.total_cards:,} cards on {len(cluster)} nodes; "
        f"{platform.python_version()}, {platform.machine()})",
        "",
    ]
    config = plan.Config(
        preemption=not args.no_preemption,
        preemption_delay_s=args.preemption_delay,
        preemption_exempt_s=args.preemption_exempt,
        spread_delay_s=args.spread_delay,
        queueing=args.queueing,
    )
    for seed in (int(s) for s in args.seeds.split(",")):
        lines += [*one_seed(cluster, seed, args.gangs, args.period, config, args.model), ""]
    text = "\n".join(lines)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
