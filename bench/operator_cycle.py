"""Benchmark: what the operator adds to a scheduling cycle at 10,000 cards.

    python bench/operator_cycle.py [--cards 10000] [--pending-pods 1000] [--seeds 3] [--out FILE]

The operator's cycle (``scheduler.Scheduler.cycle``) reads every Node, pod, job and pool as
plain dicts, rebuilds the cluster and the ledger from labels and pod annotations, settles each
workload's lifecycle, runs ``cycle.run``, validates the plan and builds the pods to create.
Its writes go to a recording actuator here, so the API server's latency is left out. The
baseline, measured in the same run on the same generated state, is ``cycle.run`` alone: the
simulator's cycle. The ratio is the price of rebuilding everything from the API objects on
every cycle instead of keeping state.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import platform
import random
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "operator"))

from archipelago import config, cycle, scheduler  # noqa: E402
from archipelago.api import labels  # noqa: E402
from archipelago.cluster import ledger as ledger_  # noqa: E402
from archipelago.inventory import pods as inventory_pods  # noqa: E402
from archipelago.placement import plan  # noqa: E402
from archipelago.sim import benchmark, synthetic  # noqa: E402

NAMESPACE = "bench"
PRODUCTS = {"H800": "NVIDIA-H800", "A100-SXM4-80GB": "NVIDIA-A100-SXM4-80GB"}


class Recorder:
    """An actuator that records writes instead of sending them."""

    def __init__(self) -> None:
        self.created = self.deleted = self.patched = self.events = 0

    async def create_gang(self, pods):
        self.created += len(pods)
        return type("Created", (), {"ok": True})()

    async def ensure_service(self, service):
        return True

    async def delete_pods(self, namespace, names, grace_s=None):
        self.deleted += len(names)
        return 0

    async def patch_status(self, kind, namespace, name, status):
        self.patched += 1
        return True

    async def event(self, involved, type_, reason, message):
        self.events += 1


def inputs(cards: int, pending_pods: int, seed: int) -> tuple[scheduler.Inputs, plan.Snapshot, list]:
    """The generated state as API objects, and the same state as the core sees it."""
    rng = random.Random(seed)
    cluster = synthetic.island_cluster(cards)
    snapshot = synthetic.busy_snapshot(cluster, rng)
    batch = synthetic.pending_batch(cluster, pending_pods, rng)
    nodes = [_node(n) for n in cluster.nodes]
    pools = [_pool("gpu", "GPU", "nvidia.com/gpu"), _pool("npu", "NPU", "huawei.com/Ascend910")]
    jobs, pods = [], []
    for name, r in snapshot.running.items():
        jobs.append(_job(r.gang, name, running=True))
        for pod in r.pods:
            pods.append(_pod(name, pod, snapshot.ledger.get(pod), cluster))
    jobs += [_job(g, g.name, running=False, queued=k) for k, g in enumerate(batch)]
    classes = [{"metadata": {"name": f"p{v}"}, "value": v} for v in (0, 100, 1000)]
    state = scheduler.Inputs(nodes=nodes, pools=pools, pods=pods, jobs=jobs, priority_classes=classes)
    return state, snapshot, batch


def _node(n) -> dict:
    model = n.model
    node_labels = {**n.labels, "pool": "npu" if model.startswith("Ascend") else "gpu"}
    if model.startswith("Ascend"):
        node_labels |= {"accelerator": "huawei-Ascend910", "accelerator-type": "module-910b-8"}
        resource = "huawei.com/Ascend910"
    else:
        node_labels["nvidia.com/gpu.product"] = PRODUCTS[model]
        resource = "nvidia.com/gpu"
    capacity = {"cpu": str(n.cpu_milli // 1000), "memory": f"{n.memory_mib}Mi", resource: str(n.card_count)}
    return {
        "metadata": {"name": n.name, "labels": node_labels},
        "spec": {},
        "status": {"capacity": capacity, "allocatable": capacity, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def _pool(name: str, kind: str, resource: str) -> dict:
    return {
        "metadata": {"name": name, "generation": 1},
        "spec": {"nodeSelector": {"pool": name}, "kind": kind, "resourceName": resource},
    }


def _job(gang, name: str, *, running: bool, queued: int = 0) -> dict:
    s = gang.pod_sets[0]
    request = s.request
    spec = {
        "replicaSets": [
            {
                "name": s.role,
                "replicas": s.count,
                "cards": {"count": request.cards},
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "image": "train",
                                "resources": {
                                    "requests": {"cpu": f"{request.cpu_milli}m", "memory": f"{request.memory_mib}Mi"}
                                },
                            }
                        ]
                    }
                },
            }
        ],
        "deviceModels": sorted(request.models),
        "priorityClassName": f"p{gang.priority}",
        "preemptible": gang.preemptible,
    }
    if gang.topology:
        spec["topology"] = {"level": gang.topology.level, "mode": gang.topology.mode.value.capitalize()}
    status = {"phase": "Running", "startTime": "2026-11-21T09:00:00Z"} if running else {}
    return {
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": name,
            "generation": 1,
            "creationTimestamp": f"2026-11-21T08:{queued // 60:02d}:{queued % 60:02d}Z",
        },
        "spec": spec,
        "status": status,
    }


def _pod(job: str, pod: str, a: ledger_.Allocation, cluster) -> dict:
    role, index = pod.rsplit("-", 2)[-2:]
    return {
        "metadata": {
            "name": pod,
            "namespace": NAMESPACE,
            "labels": {
                labels.MANAGED_BY: labels.MANAGER,
                labels.JOB_KIND: "TrainingJob",
                labels.JOB_NAME: job,
                labels.ROLE: role,
                labels.INDEX: index,
            },
            "annotations": inventory_pods.annotations(a, cluster),
            "creationTimestamp": "2026-11-21T09:00:00Z",
        },
        "spec": {"nodeName": cluster.nodes[a.node].name},
        "status": {"phase": "Running"},
    }


def measure(cards: int, pending_pods: int, seed: int) -> dict:
    state, snapshot, batch = inputs(cards, pending_pods, seed)
    budget = plan.Config(budget_s=1.0, seed=seed)
    started = time.perf_counter()
    bare = cycle.run(snapshot, batch, budget)
    bare_s = time.perf_counter() - started

    recorder = Recorder()
    loop = scheduler.Scheduler(lambda: state, recorder, config.Operator(cycle=budget, metrics_port=None))
    started = time.perf_counter()
    applied = asyncio.run(loop.cycle())
    operator_s = time.perf_counter() - started
    return {
        "bare_s": bare_s,
        "operator_s": operator_s,
        # Preemptors wait in the operator until their victims' pods are gone; count them out of both.
        "bare_pods": bare.pods_placed
        - sum(len(bare.placed[e.for_gang]) for e in {e.for_gang: e for e in bare.evictions}.values()),
        "operator_pods": applied.pods_placed if applied else 0,
        "created": recorder.created,
        "running_pods": len(state.pods),
        "jobs": len(state.jobs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--pending-pods", type=int, default=1_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()
    runs = [measure(args.cards, args.pending_pods, seed) for seed in range(args.seeds)]
    ratio = [r["operator_s"] / r["bare_s"] for r in runs]
    lines = [
        f"Command: `python bench/operator_cycle.py --cards {args.cards} --pending-pods {args.pending_pods} "
        f"--seeds {args.seeds}` on {platform.processor() or platform.machine()}, Python {platform.python_version()}.",
        "",
        "| seed | running pods | jobs | cycle.run s (baseline) | operator cycle s | ratio "
        "| pods placed (bare / operator) |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed, r, q in zip(range(args.seeds), runs, ratio, strict=True):
        lines.append(
            f"| {seed} | {r['running_pods']} | {r['jobs']} | {r['bare_s']:.3f} | {r['operator_s']:.3f} | {q:.2f}x "
            f"| {r['bare_pods']} / {r['operator_pods']} |"
        )
    lines += ["", f"Mean ratio {statistics.mean(ratio):.2f}x; peak RSS {benchmark.peak_rss_mib():.0f} MiB."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
