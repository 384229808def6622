"""The built-in demo: a small AI centre and a day of mixed work, generated, no files needed.

Cluster (448 cards on 56 servers): two spines; islands ``a`` and ``c`` of 16 8-card
A100-SXM4-80GB servers, island ``b`` of 16 8-card H800 servers, and island ``npu`` of 8 8-card
Ascend 910B servers (two HCCS rings of 4 each).

Workload: fractional LLM inference (1/10 to 3/4 of a card; the share is the pod's device memory
over the card's 80 GiB), whole-card serving, 2- to 8-card fine-tuning and pre-training on GPUs
and NPUs, and cpu-only data preparation. Pods arrive over about ten hours; inference is
long-lived, jobs shorter. Card demand is 125% of capacity, so replayed load overruns the
cluster before the day ends.
"""

from __future__ import annotations

import dataclasses
import random

from archipelago import cluster as cluster_
from archipelago import workload
from archipelago.cluster import devices, nodes, topology
from archipelago.sim import scenario

_GiB = 1024
_HOUR = 3600.0
_GPUS = frozenset({"A100-SXM4-80GB", "H800"})
_NVIDIA = "nvidia.com/gpu"
_ASCEND = "huawei.com/Ascend910"

_ISLANDS = (
    # spine, island, model, servers, cpu milli, memory MiB
    ("spine-1", "a", "A100-SXM4-80GB", 16, 128_000, 1024 * _GiB),
    ("spine-1", "b", "H800", 16, 192_000, 2048 * _GiB),
    ("spine-2", "c", "A100-SXM4-80GB", 16, 128_000, 1024 * _GiB),
    ("spine-2", "npu", "Ascend910B", 8, 192_000, 1536 * _GiB),
)


@dataclasses.dataclass(frozen=True)
class _Kind:
    name: str
    weight: float
    request: workload.PodRequest
    mean_hours: float


def _kinds() -> tuple[_Kind, ...]:
    def gpu(cards: int, milli: int = 1000, device_gib: int = 0, models: frozenset[str] = _GPUS) -> dict:
        return dict(
            cards=cards,
            milli_per_card=milli,
            device_memory_mib=device_gib * _GiB,
            models=models,
            resource=_NVIDIA,
        )

    def npu(cards: int) -> dict:
        return dict(cards=cards, models=frozenset({"Ascend910B"}), resource=_ASCEND)

    def kind(name: str, weight: float, hours: float, cpu: int, mem_gib: int, **cards: object) -> _Kind:
        return _Kind(name, weight, workload.PodRequest(name, cpu * 1000, mem_gib * _GiB, **cards), hours)  # type: ignore[arg-type]

    return (
        kind("embed", 12, 96, 2, 16, **gpu(1, 100, 8)),
        kind("chat-7b", 30, 96, 4, 32, **gpu(1, 200, 16)),
        kind("chat-13b", 16, 96, 8, 64, **gpu(1, 375, 30)),
        kind("chat-34b", 8, 72, 8, 96, **gpu(1, 750, 60)),
        kind("serve-70b", 8, 72, 16, 128, **gpu(1)),
        kind("finetune-2", 6, 16, 24, 192, **gpu(2)),
        kind("finetune-4", 5, 24, 48, 384, **gpu(4)),
        kind("pretrain-8", 1.5, 48, 96, 768, **gpu(8, models=frozenset({"H800"}))),
        kind("npu-finetune-2", 1.5, 16, 24, 192, **npu(2)),
        kind("npu-finetune-4", 0.75, 24, 48, 384, **npu(4)),
        kind("npu-train-8", 0.3, 48, 96, 768, **npu(8)),
        kind("etl", 10, 8, 8, 32),
    )


def cluster() -> cluster_.Cluster:
    built = []
    for spine, island, model, count, cpu, memory in _ISLANDS:
        for k in range(count):
            built.append(
                nodes.Node(
                    name=f"{island}-{k:02d}",
                    cpu_milli=cpu,
                    memory_mib=memory,
                    devices=devices.cards(model, 8),
                    pool="npu" if devices.model(model).kind is devices.DeviceKind.NPU else "gpu",
                    labels={topology.SPINE: spine, topology.ISLAND: island},
                )
            )
    return cluster_.build(built)


def build(seed: int = 7, demand: float = 1.25) -> scenario.Scenario:
    """The demo scenario; pods are drawn until their card demand reaches ``demand`` x capacity.

    Arrivals are a Poisson process, 1,200 a day on average; durations are exponential with
    each kind's mean. The same ``seed`` always gives the same scenario.
    """
    rng = random.Random(seed)
    kinds = _kinds()
    built = cluster()
    capacity = built.capacity_milli
    pods: list[scenario.TracePod] = []
    total = 0
    clock = 0.0
    counts: dict[str, int] = {}
    while total < demand * capacity:
        kind = rng.choices(kinds, weights=[k.weight for k in kinds])[0]
        counts[kind.name] = counts.get(kind.name, 0) + 1
        request = dataclasses.replace(kind.request, name=f"{kind.name}-{counts[kind.name]:03d}")
        clock += rng.expovariate(1200 / (24 * _HOUR))
        lifetime = rng.expovariate(1.0 / kind.mean_hours) * _HOUR
        pods.append(scenario.TracePod(request, created=round(clock, 1), deleted=round(clock + lifetime, 1)))
        total += request.milli
    return scenario.Scenario("demo", built, tuple(pods))
