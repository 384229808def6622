"""Keyword builders for Kubernetes objects as the inventory reads them: Node and Pod dicts, pool specs.

Defaults describe a healthy, Ready GPU server: 64 cores, 512 GiB, 8 cards of
``nvidia.com/gpu`` with no model label. A test that cares about a field names it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from archipelago import cluster as cluster_
from archipelago.api import common, resources
from archipelago.api import labels as labels_
from archipelago.cluster import ledger as ledger_
from archipelago.cluster import topology
from archipelago.inventory import pods, vendors
from tests.builders import make_node

GPU = "nvidia.com/gpu"
NPU = "huawei.com/Ascend910"
CREATED = "2024-05-01T08:00:00Z"
_TWO_NODES = cluster_.build([make_node(name="n1", cards=8), make_node(name="n2", cards=8)])


def make_node_body(
    *,
    name: str = "n1",
    cards: int | None = 8,
    resource: str = GPU,
    allocatable_cards: int | None = None,
    product: str | None = None,
    gpu_memory: str | None = None,
    gpu_count: str | None = None,
    accelerator: str | None = None,
    accelerator_type: str | None = None,
    device_model: str | None = None,
    island: str | None = None,
    spine: str | None = None,
    ready: bool | str = True,
    ready_since: str | None = None,
    cpu: str = "64",
    memory: str = "512Gi",
    unhealthy_label: str | None = None,
    unhealthy_annotation: str | None = None,
    unschedulable: bool = False,
    taints: Iterable[Mapping[str, str]] = (),
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A core/v1 Node dict. ``cards=None`` leaves the card resource out of the status entirely.

    ``ready`` is the Ready condition's status: True, False or a string such as ``"Unknown"``;
    ``ready_since`` its ``lastTransitionTime`` (RFC 3339), absent by default.
    """
    all_labels = {topology.HOSTNAME: name, **(labels or {})}
    for key, value in (
        (vendors.GPU_PRODUCT, product),
        (vendors.GPU_MEMORY, gpu_memory),
        (vendors.GPU_COUNT, gpu_count),
        (vendors.ACCELERATOR, accelerator),
        (vendors.ACCELERATOR_TYPE, accelerator_type),
        (labels_.DEVICE_MODEL, device_model),
        (topology.ISLAND, island),
        (topology.SPINE, spine),
        (labels_.UNHEALTHY_CARDS, unhealthy_label),
    ):
        if value is not None:
            all_labels[key] = value
    capacity: dict[str, str] = {"cpu": cpu, "memory": memory}
    allocatable: dict[str, str] = {"cpu": cpu, "memory": memory}
    if cards is not None:
        capacity[resource] = str(cards)
        allocatable[resource] = str(cards if allocatable_cards is None else allocatable_cards)
    condition = ready if isinstance(ready, str) else ("True" if ready else "False")
    spec: dict[str, Any] = {"taints": [dict(t) for t in taints]}
    if unschedulable:
        spec["unschedulable"] = True
    metadata: dict[str, Any] = {"name": name, "labels": all_labels}
    if unhealthy_annotation is not None:
        metadata["annotations"] = {labels_.UNHEALTHY_CARDS: unhealthy_annotation}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": metadata,
        "spec": spec,
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": condition, **({"lastTransitionTime": ready_since} if ready_since else {})},
            ],
        },
    }


def make_pool(
    *,
    kind: str = "GPU",
    resource: str = GPU,
    selector: Mapping[str, str] | None = None,
    device_model: str | None = None,
    levels: Sequence[str] | None = None,
    link_rules: Iterable[resources.LinkRule] = (),
) -> resources.AcceleratorPoolSpec:
    """An AcceleratorPool spec; no ``selector`` selects every node."""
    fields: dict[str, Any] = {}
    if levels is not None:
        fields["topology_levels"] = list(levels)
    return resources.AcceleratorPoolSpec(
        node_selector=dict(selector or {}),
        kind=common.DeviceKind(kind),
        resource_name=resource,
        device_model=device_model,
        link_rules=list(link_rules),
        **fields,
    )


def make_link_rule(
    *, model: str, fabric: str = "HCCS", group_size: int = 4, strict: bool = True, pod_sizes=(), large_pod: int = 0
) -> resources.LinkRule:
    return resources.LinkRule(
        model=model,
        fabric=resources.Fabric(fabric),
        group_size=group_size,
        strict=strict,
        pod_sizes=list(pod_sizes),
        large_pod=large_pod,
    )


def make_allocation(
    *,
    pod: str = "default/p0",
    node: int = 0,
    cards: Sequence[int] = (),
    milli: int | Sequence[int] = 1000,
    device_memory_mib: int | Sequence[int] = 0,
    cpu_milli: int = 1000,
    memory_mib: int = 1024,
) -> ledger_.Allocation:
    """An allocation of ``cards`` with ``milli`` and ``device_memory_mib`` each (or one value per card)."""
    per_card_milli = [milli] * len(cards) if isinstance(milli, int) else list(milli)
    per_card_memory = (
        [device_memory_mib] * len(cards) if isinstance(device_memory_mib, int) else list(device_memory_mib)
    )
    shares = tuple(ledger_.CardShare(c, m, d) for c, m, d in zip(cards, per_card_milli, per_card_memory, strict=True))
    return ledger_.Allocation(pod, node, cpu_milli, memory_mib, shares)


def make_pod_body(
    *,
    name: str = "p0",
    namespace: str = "default",
    node: str | None = "n1",
    allocation: ledger_.Allocation | None = None,
    annotations: Mapping[str, str] | None = None,
    phase: str = "Running",
    created: str = CREATED,
    deleting: bool = False,
    requests: Mapping[str, str] | None = None,
    cluster: cluster_.Cluster | None = None,
) -> dict[str, Any]:
    """A core/v1 Pod dict bound to ``node``; ``allocation`` becomes our annotations, ``annotations`` override them.

    The annotations are written for ``cluster``, by default two 8-card nodes ``n1`` and ``n2``.
    """
    written = pods.annotations(allocation, cluster or _TWO_NODES) if allocation is not None else {}
    notes = {**written, **(annotations or {})}
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "creationTimestamp": created}
    if notes:
        metadata["annotations"] = notes
    if deleting:
        metadata["deletionTimestamp"] = "2024-05-01T09:00:00Z"
    container: dict[str, Any] = {"name": "main", "image": "busybox"}
    if requests:
        container["resources"] = {"requests": dict(requests), "limits": dict(requests)}
    spec: dict[str, Any] = {"containers": [container]}
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": {"phase": phase}}
