"""Benchmark: decision time per pod, time per seed and peak memory on the 1,213-node openb cluster.

    python bench/decision_speed.py [--traces DIR] [--repeats 3] [--out FILE]

Each (policy, repeat) runs one seed (42) of the FGD protocol on the default trace in a fresh
process, so its peak RSS is its own. The machine is shared and noisy, so figures are medians
over repeats and are also given as ratios to FGD measured in the same run. The baseline
``archipelago-uncached`` is the default policy with the score tables switched off (every node
scored in Python on every decision): the ratio shows what the tables buy.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time

POLICIES = ("archipelago", "fgd", "bestfit", "archipelago-uncached")
TARGET_P50_MS = 2.0
TARGET_SEED_S = 60.0


def child(policy: str, traces_dir: str) -> dict:
    """One seed in this process; returns the measurements."""
    import numpy as np

    from archipelago import cluster, policies
    from archipelago.policies import default, scoring
    from archipelago.sim import protocols, scenario, traces

    if policy == "archipelago-uncached":

        class Uncached(default.Archipelago):
            name = "archipelago-uncached"

            def scores(self, pod):  # type: ignore[no-untyped-def]
                values = np.full(len(self.nodes), scoring.INFEASIBLE, dtype=np.int64)
                for i in range(len(self.nodes)):
                    evaluation = self.evaluate(i, pod)
                    if evaluation is not None:
                        values[i] = evaluation[0]
                return values

        policies._REGISTRY[Uncached.name] = Uncached  # a benchmark-only policy

    root = pathlib.Path(traces_dir) / "alibaba-gpu-v2023"
    nodes = cluster.build(traces.read_nodes_csv(root / "openb_node_list_gpu_node.csv"))
    pods = traces.read_pods_csv(root / "openb_pod_list_default.csv")
    scn = scenario.Scenario("default", nodes, tuple(pods))
    started = time.perf_counter()
    result = protocols.run_fgd(scn, policy, 42)
    seconds = time.perf_counter() - started
    decisions_ms = result.decisions_ns / 1e6
    return {
        "policy": policy,
        "seed_s": seconds,
        "pods": result.pods,
        "p50_ms": float(np.percentile(decisions_ms, 50)),
        "p99_ms": float(np.percentile(decisions_ms, 99)),
        "mean_ms": float(decisions_ms.mean()),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "kpi100": result.kpi(100),
    }


def main() -> int:
    args = _arguments()
    if args.child:
        print(json.dumps(child(args.child, args.traces)))
        return 0
    if not (pathlib.Path(args.traces) / "alibaba-gpu-v2023").is_dir():
        print(f"traces not found under {args.traces}; pass --traces or set ARCHIPELAGO_TRACES", file=sys.stderr)
        return 2
    runs: dict[str, list[dict]] = {p: [] for p in POLICIES}
    for _ in range(args.repeats):
        for policy in POLICIES:  # interleaved, so load drift hits every policy alike
            out = subprocess.run(
                [sys.executable, __file__, "--child", policy, "--traces", args.traces],
                check=True,
                capture_output=True,
                text=True,
            )
            runs[policy].append(json.loads(out.stdout))
    median = {p: {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "policy"} for p, rs in runs.items()}
    fgd = median["fgd"]
    lines = [
        f"Command: `python bench/decision_speed.py --repeats {args.repeats}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"medians of {args.repeats} runs, one process per run",
        "",
        "| policy | decision p50 ms | p99 ms | mean ms | one seed (s) | peak RSS MiB | p50 / FGD | seed time / FGD |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for policy, m in median.items():
        lines.append(
            f"| {policy} | {m['p50_ms']:.3f} | {m['p99_ms']:.2f} | {m['mean_ms']:.3f} | {m['seed_s']:.1f} | "
            f"{m['peak_rss_mib']:.0f} | {m['p50_ms'] / fgd['p50_ms']:.2f}x | {m['seed_s'] / fgd['seed_s']:.2f}x |"
        )
    ours = median["archipelago"]
    uncached = median["archipelago-uncached"]
    checks = [
        f"p50 {ours['p50_ms']:.3f} ms < {TARGET_P50_MS} ms: {'yes' if ours['p50_ms'] < TARGET_P50_MS else 'NO'}",
        f"one seed {ours['seed_s']:.1f} s < {TARGET_SEED_S:.0f} s: {'yes' if ours['seed_s'] < TARGET_SEED_S else 'NO'}",
        f"score tables speed up the mean decision {uncached['mean_ms'] / ours['mean_ms']:.0f}x",
    ]
    lines += ["", "Targets for the default policy: " + "; ".join(checks) + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    ok = ours["p50_ms"] < TARGET_P50_MS and ours["seed_s"] < TARGET_SEED_S
    return 0 if ok else 1


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = os.environ.get("ARCHIPELAGO_TRACES") or pathlib.Path(__file__).resolve().parents[2] / "shared" / "traces"
    parser.add_argument("--traces", default=str(default))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main())
