"""Pods' allocation annotations: written from an allocation, read back to rebuild the ledger.

Units: cpu in milli-cores, memory and device memory in MiB, card shares in milli-cards.

The ``archipelago.dev/`` allocation annotations (``archipelago.api.labels``) are the durable
record of the ledger: the operator writes them on every pod it creates and rebuilds the ledger
from them when it starts. A pod is identified by ``key``: ``<namespace>/<name>``.

Container runtimes: the NVIDIA Container Toolkit exposes the GPUs listed in
``NVIDIA_VISIBLE_DEVICES`` (indices or UUIDs); ``void`` (like empty or unset) makes the runtime
behave like runc, so no GPU and no driver library is exposed, while ``none`` would still inject
the driver (NVIDIA Container Toolkit user guide, "GPU Enumeration"). The Ascend Docker Runtime
mounts the NPUs listed in ``ASCEND_VISIBLE_DEVICES`` (physical ids, ``/dev/davinci<id>``) and
none when it is unset (hiascend.com, MindCluster "Ascend Docker Runtime: usage on the Docker
client").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from archipelago import cluster as cluster_
from archipelago.api import labels
from archipelago.cluster import devices
from archipelago.cluster import ledger as ledger_
from archipelago.cluster import nodes as nodes_
from archipelago.inventory import quantities

NVIDIA_VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
ASCEND_VISIBLE_DEVICES = "ASCEND_VISIBLE_DEVICES"
NO_GPUS = "void"
"""``NVIDIA_VISIBLE_DEVICES`` value that hides every GPU (and the driver) from a container."""
TERMINATED = frozenset({"Succeeded", "Failed"})
"""Pod phases in which a pod holds nothing."""
ALLOCATION = (labels.POD_CARDS, labels.POD_MILLI, labels.POD_DEVICE_MEMORY, labels.POD_CPU, labels.POD_MEMORY)
"""The annotations that record an allocation; a pod carrying any of them is ours."""


def key(pod: Mapping[str, Any]) -> str:
    """The pod's ledger name: ``<namespace>/<name>`` (just ``<name>`` without a namespace)."""
    metadata = pod.get("metadata") or {}
    namespace, name = metadata.get("namespace"), str(metadata.get("name") or "")
    return f"{namespace}/{name}" if namespace else name


def holds(pod: Mapping[str, Any]) -> bool:
    """True while the pod holds its node's resources: until it has Succeeded or Failed.

    A pod being deleted (``deletionTimestamp`` set) still holds them until it is gone, so a
    gracefully preempted gang keeps its cards while it checkpoints.
    """
    return (pod.get("status") or {}).get("phase") not in TERMINATED


def managed(pod: Mapping[str, Any]) -> bool:
    """True for a pod carrying any allocation annotation: one the operator placed."""
    notes = (pod.get("metadata") or {}).get("annotations") or {}
    return any(k in notes for k in ALLOCATION)


def annotations(allocation: ledger_.Allocation, cluster: cluster_.Cluster) -> dict[str, str]:
    """The pod annotations that record ``allocation`` on ``cluster`` exactly; ``allocation`` reads them back.

    Cards keep the allocation's order. Milli and device memory are one value when every card
    has the same, else one value per card; all three are empty for a pod without cards. Raises
    ``ValueError`` if the allocation names a node or card that ``cluster`` lacks, as such
    annotations could not be read back.
    """
    shares = allocation.shares
    if not 0 <= allocation.node < len(cluster):
        raise ValueError(f"pod {allocation.pod}: node index {allocation.node} is not in the cluster")
    node = cluster.nodes[allocation.node]
    if any(not 0 <= s.card < node.card_count for s in shares):
        raise ValueError(f"pod {allocation.pod}: a card of {[s.card for s in shares]} is not on node {node.name}")
    return {
        labels.POD_CARDS: ",".join(str(s.card) for s in shares),
        labels.POD_MILLI: _compact([s.milli for s in shares]),
        labels.POD_DEVICE_MEMORY: _compact([s.memory_mib for s in shares]),
        labels.POD_CPU: str(allocation.cpu_milli),
        labels.POD_MEMORY: str(allocation.memory_mib),
    }


def visible_devices(allocation: ledger_.Allocation, node: nodes_.Node) -> dict[str, str]:
    """The environment a container runtime reads to expose exactly the pod's cards.

    NPUs: ``ASCEND_VISIBLE_DEVICES=<indices>``, nothing for a pod without NPUs (the Ascend runtime
    mounts none). GPUs and cpu-only nodes: ``NVIDIA_VISIBLE_DEVICES=<indices>``, or ``void`` for
    a pod without cards, overriding the ``all`` that CUDA base images set. Indices are the
    node's card indices, assumed equal to the driver's (NVML index, ``/dev/davinci`` id). A
    fractional pod sees its whole card: the runtime does not enforce milli or memory shares.
    """
    cards = ",".join(str(s.card) for s in allocation.shares)
    if node.kind is devices.DeviceKind.NPU:
        return {ASCEND_VISIBLE_DEVICES: cards} if cards else {}
    return {NVIDIA_VISIBLE_DEVICES: cards or NO_GPUS}


def allocation(pod: Mapping[str, Any], cluster: cluster_.Cluster) -> tuple[ledger_.Allocation | None, str | None]:
    """The allocation a pod's annotations record, on its node of ``cluster``, or a problem.

    ``(None, None)`` for a pod that holds nothing here: not ours, or Succeeded or Failed.
    ``(None, problem)`` when the annotations do not decode, name a card the node lacks, or the
    pod's node is not in ``cluster``. Never raises.
    """
    if not managed(pod) or not holds(pod):
        return None, None
    name = key(pod)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        return None, f"pod {name}: carries allocation annotations but no spec.nodeName; delete it to reschedule"
    index = _index(cluster, node_name)
    if index is None:
        return None, f"pod {name}: its node {node_name} is not in the cluster (NotReady, unreadable or in no pool)"
    notes = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        return _decode(name, index, cluster.nodes[index], notes), None
    except ValueError as error:
        return None, f"pod {name}: {error}; correct the annotation or delete the pod to reschedule it"


@dataclasses.dataclass(frozen=True, slots=True)
class Conflict:
    """A pod whose recorded allocation does not fit what earlier pods hold (``message`` says why)."""

    pod: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"{self.message} on node {self.node}; the pod is not in the ledger: evict it"


@dataclasses.dataclass(frozen=True, eq=False)
class Rebuilt:
    """A ledger rebuilt from pods, and the pods it could not, or would not, account for.

    ``ledger`` holds every live managed pod on a cluster node whose allocation fits. ``lost``:
    managed pods on nodes outside the cluster (NotReady or gone), not applied. ``conflicts``:
    pods whose allocation would over-commit (double booking, an unhealthy card), not applied:
    what they use is missing from the ledger, so evict them before placing on their node.
    ``problems``: managed pods whose annotations do not decode. ``foreign``: pods the default
    scheduler bound to cluster nodes with the node's card resource requested; they are only
    reported, not accounted for. All lists are in rebuild order.
    """

    ledger: ledger_.Ledger
    lost: tuple[str, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    problems: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()


def ledger(cluster: cluster_.Cluster, pods: Iterable[Mapping[str, Any]]) -> Rebuilt:
    """A fresh ledger of ``cluster`` with every live managed pod's allocation applied. Never raises.

    Pods are applied oldest first (``creationTimestamp``, then ``key``), so the same pods give
    the same ledger and, on a double booking, the older pod keeps the cards. Succeeded and
    Failed pods hold nothing; pods without allocation annotations are not ours and are ignored,
    except that foreign card users are listed (see ``Rebuilt``). The cpu and memory of pods
    that are not ours (daemons, system pods) are not subtracted either: node allocatable is
    trusted to leave room for them.
    """
    result = ledger_.Ledger(cluster)
    lost: list[str] = []
    conflicts: list[Conflict] = []
    problems: list[str] = []
    foreign: list[str] = []
    for pod in sorted((p for p in pods if holds(p)), key=_age):
        name = key(pod)
        node_name = (pod.get("spec") or {}).get("nodeName")
        index = _index(cluster, node_name) if node_name else None
        if not managed(pod):
            if index is not None and _requests_cards(pod, cluster.nodes[index]):
                foreign.append(name)
            continue
        if node_name and index is None:
            lost.append(name)
            continue
        found, problem = allocation(pod, cluster)
        if problem is not None or found is None:
            problems.append(problem or f"pod {name}: holds no allocation")
            continue
        try:
            result.allocate(found)
        except ledger_.CapacityError as error:
            conflicts.append(Conflict(name, node_name, str(error)))
    return Rebuilt(result, tuple(lost), tuple(conflicts), tuple(problems), tuple(foreign))


def _decode(pod: str, index: int, node: nodes_.Node, notes: Mapping[str, Any]) -> ledger_.Allocation:
    cards = _ints(notes, labels.POD_CARDS)
    if len(set(cards)) != len(cards):
        raise ValueError(f"annotation {labels.POD_CARDS}={notes[labels.POD_CARDS]!r} lists a card twice")
    missing = [c for c in cards if c >= node.card_count]
    if missing:
        raise ValueError(
            f"annotation {labels.POD_CARDS} names card {missing[0]}, but {node.name} has {node.card_count}"
        )
    milli = _per_card(notes, labels.POD_MILLI, len(cards))
    if any(not 0 < m <= devices.MILLI_PER_CARD for m in milli):
        raise ValueError(f"annotation {labels.POD_MILLI}={notes[labels.POD_MILLI]!r} is outside 1..1000")
    memory = _per_card(notes, labels.POD_DEVICE_MEMORY, len(cards))
    cpu, node_memory = (_ints(notes, k, single=True)[0] for k in (labels.POD_CPU, labels.POD_MEMORY))
    shares = tuple(ledger_.CardShare(c, m, d) for c, m, d in zip(cards, milli, memory, strict=True))
    return ledger_.Allocation(pod, index, cpu, node_memory, shares)


def _ints(notes: Mapping[str, Any], name: str, *, single: bool = False) -> list[int]:
    """The non-negative integers of a comma-separated annotation; exactly one when ``single``."""
    text = notes.get(name)
    if not isinstance(text, str):
        raise ValueError(f"annotation {name} is missing or not a string")
    items = [item.strip() for item in text.split(",")] if text.strip() else []
    if any(not item.isascii() or not item.isdigit() for item in items) or (single and len(items) != 1):
        wanted = "a non-negative integer" if single else "comma-separated non-negative integers"
        raise ValueError(f"annotation {name}={text!r} is not {wanted}")
    return [int(item) for item in items]


def _per_card(notes: Mapping[str, Any], name: str, cards: int) -> list[int]:
    """One value per card: an annotation of one value (for every card) or of one per card."""
    if cards == 0:
        if str(notes.get(name) or "").strip():
            raise ValueError(f"annotation {name}={notes[name]!r} must be empty for a pod without cards")
        return []
    values = _ints(notes, name)
    if len(values) == 1:
        return values * cards
    if len(values) != cards:
        raise ValueError(f"annotation {name}={notes[name]!r} needs 1 or {cards} values, one per card")
    return values


def _compact(values: list[int]) -> str:
    if not values:
        return ""
    if all(v == values[0] for v in values):
        return str(values[0])
    return ",".join(str(v) for v in values)


def _index(cluster: cluster_.Cluster, node_name: str) -> int | None:
    try:
        return cluster.index_of(node_name)
    except KeyError:
        return None


def _age(pod: Mapping[str, Any]) -> tuple[str, str]:
    # RFC 3339 timestamps in the API's UTC "Z" form sort as strings.
    return str((pod.get("metadata") or {}).get("creationTimestamp") or ""), key(pod)


def _requests_cards(pod: Mapping[str, Any], node: nodes_.Node) -> bool:
    """True when a container asks for the node's card resource (requests or limits, non-zero)."""
    if not node.devices:
        return False
    resource = node.devices[0].resource
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
        asked = (container.get("resources") or {}) if isinstance(container, Mapping) else {}
        for amounts in (asked.get("requests") or {}, asked.get("limits") or {}):
            if resource in amounts and _nonzero(amounts[resource]):
                return True
    return False


def _nonzero(amount: object) -> bool:
    try:
        return quantities.parse(amount) != 0
    except ValueError:
        return True
