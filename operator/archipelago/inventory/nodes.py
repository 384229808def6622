"""Reading core/v1 Node objects (plain dicts, camelCase) into the cluster model's nodes.

Units: cpu in milli-cores, memory and device memory in MiB.

Reading never raises on a bad label or status: each reading carries the problems found, as
sentences naming the node, the field and the fix, and falls back where a fallback is safe.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any

from archipelago.api import labels as labels_
from archipelago.api import resources
from archipelago.cluster import devices
from archipelago.cluster import nodes as nodes_
from archipelago.inventory import quantities, vendors

UNSCHEDULABLE = nodes_.Taint("node.kubernetes.io/unschedulable", "", "NoSchedule")
"""The taint a cordoned node (``spec.unschedulable``) carries, as the node lifecycle controller adds it."""
NOT_READY = nodes_.Taint("node.kubernetes.io/not-ready", "", "NoSchedule")
"""The taint of a node whose Ready condition is False, as the node lifecycle controller adds it."""
UNREACHABLE = nodes_.Taint("node.kubernetes.io/unreachable", "", "NoSchedule")
"""The taint of a node whose Ready condition is Unknown (its kubelet stopped reporting)."""
UNKNOWN_MODEL = "unknown"
"""The model of cards no label and no pool names; such cards only serve pods that name no model."""

_INDEX = re.compile(r"^[0-9]+$")
_SEPARATORS = re.compile(r"[,._]")


@dataclasses.dataclass(frozen=True)
class NodeReading:
    """One Node object as read into pool ``pool``: the core node, whether it is Ready, and what was wrong.

    ``node`` is None when the node cannot be modelled (no readable allocatable cpu or memory).
    Only a ``usable`` reading joins the cluster; the pods of any other pool node are lost.
    """

    name: str
    pool: str
    node: nodes_.Node | None
    ready: bool
    problems: tuple[str, ...] = ()
    not_ready: tuple[str, float] | None = None
    """For a node that is not Ready: its Ready condition's status (``False``, ``Unknown``) and the
    time it took it (``lastTransitionTime``, seconds since the epoch); None when Ready or unknown."""

    @property
    def usable(self) -> bool:
        return self.ready and self.node is not None

    def within_grace(self, now: float | None, lost_after_s: float) -> bool:
        """Whether a not-Ready node may still come back: NotReady for less than ``lost_after_s``."""
        return (
            now is not None
            and self.node is not None
            and self.not_ready is not None
            and now - self.not_ready[1] < lost_after_s
        )

    def tainted(self) -> nodes_.Node:
        """The node as the node lifecycle controller leaves a not-Ready one: tainted NoSchedule."""
        assert self.node is not None and self.not_ready is not None
        taint = UNREACHABLE if self.not_ready[0] == "Unknown" else NOT_READY
        return dataclasses.replace(self.node, taints=(*self.node.taints, taint))


def matching(body: Mapping[str, Any], pools: Mapping[str, resources.AcceleratorPoolSpec]) -> list[str]:
    """Names of the pools whose ``nodeSelector`` the node's labels satisfy, sorted.

    An empty ``nodeSelector`` selects every node, as in Kubernetes.
    """
    node_labels = _strings((body.get("metadata") or {}).get("labels"))
    return [name for name in sorted(pools) if nodes_.selected(node_labels, pools[name].node_selector)]


def pool_of(body: Mapping[str, Any], pools: Mapping[str, resources.AcceleratorPoolSpec]) -> str | None:
    """The pool the node belongs to: the first matching pool by name, or None.

    A node matched by several pools is a configuration error; ``inventory.cluster`` reports it.
    """
    names = matching(body, pools)
    return names[0] if names else None


def ready(body: Mapping[str, Any]) -> bool:
    """True when the node's ``Ready`` condition is ``True``; False for ``False``, ``Unknown`` or none."""
    for condition in (body.get("status") or {}).get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def not_ready(body: Mapping[str, Any]) -> tuple[str, float] | None:
    """The Ready condition's status and ``lastTransitionTime`` (epoch seconds) of a node that is not
    Ready; None for a Ready node or one whose condition carries no readable time."""
    for condition in (body.get("status") or {}).get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            since = condition.get("lastTransitionTime")
            if condition.get("status") == "True" or not isinstance(since, str):
                return None
            try:
                when = datetime.datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return None
            return str(condition.get("status")), when
    return None


def node(body: Mapping[str, Any], pool_name: str, spec: resources.AcceleratorPoolSpec) -> NodeReading:
    """Read one Node object as a node of pool ``pool_name``.

    Cpu and memory are ``status.allocatable``; the card count is ``status.capacity[resourceName]``
    (capacity, because device plugins lower allocatable for unhealthy cards), else GFD's
    ``nvidia.com/gpu.count``, else 0 (a cpu-only node, still useful for launchers). The card
    model is, in order: the ``archipelago.dev/device-model`` label, the GFD product, the Ascend
    ``accelerator``/``accelerator-type`` labels (``vendors``), the pool's ``deviceModel``, else
    ``unknown`` (reported). Device memory is GFD's ``nvidia.com/gpu.memory``, else the catalogue's,
    else 0. Link rules are the pool's ``linkRules`` entry for the model (set on ``Node.links``),
    else an Ascend PCIe card form's, else the catalogue model's; each card's ``link_group``
    follows them. Unhealthy cards are the indices in the ``archipelago.dev/unhealthy-cards``
    label and annotation, separated by ``,`` (``.`` or ``_`` in the label, whose values cannot
    hold commas). ``spec.unschedulable`` becomes the ``node.kubernetes.io/unschedulable:NoSchedule``
    taint.
    """
    metadata = body.get("metadata") or {}
    name = str(metadata.get("name") or "")
    status = body.get("status") or {}
    problems: list[str] = []

    def report(message: str) -> None:
        problems.append(f"node {name}: {message}")

    node_labels = _strings(metadata.get("labels"))
    allocatable = status.get("allocatable") or {}
    cpu = _quantity(allocatable, "cpu", quantities.cpu_milli, report)
    memory = _quantity(allocatable, "memory", quantities.mebibytes, report)
    cards, links = _cards(node_labels, _strings(metadata.get("annotations")), status, spec, report)
    taints = _taints(body.get("spec") or {}, report)
    is_ready = ready(body)
    since = None if is_ready else not_ready(body)
    if cpu is None or memory is None:
        return NodeReading(name, pool_name, None, is_ready, tuple(problems), since)
    try:
        core = nodes_.Node(name, cpu, memory, cards, pool_name, node_labels, taints, links)
    except ValueError as error:
        report(f"cannot be modelled ({error}); it is left out of the cluster")
        return NodeReading(name, pool_name, None, is_ready, tuple(problems), since)
    return NodeReading(name, pool_name, core, is_ready, tuple(problems), since)


Report = Callable[[str], None]


def _quantity(allocatable: Mapping[str, Any], key: str, convert: Callable[[object], int], report: Report) -> int | None:
    raw = allocatable.get(key)
    if raw is None:
        report(f"status.allocatable.{key} is missing; the node is left out of the cluster until the kubelet reports it")
        return None
    try:
        return convert(raw)
    except ValueError:
        report(f"status.allocatable.{key}={raw!r} is not a Kubernetes quantity; the node is left out of the cluster")
        return None


def _cards(
    node_labels: Mapping[str, str],
    annotations: Mapping[str, str],
    status: Mapping[str, Any],
    spec: resources.AcceleratorPoolSpec,
    report: Report,
) -> tuple[tuple[devices.Device, ...], devices.LinkTopology | None]:
    """The node's cards, and the link rules to set on ``Node.links`` (None: the model's own)."""
    count = _count(node_labels, status, spec.resource_name, report)
    if count == 0:
        return (), None
    model, form_links = _model(node_labels, spec, report)
    rule = next((r for r in spec.link_rules if r.model == model), None)
    links = _topology(rule) if rule is not None else form_links
    known = devices.CATALOGUE.get(model)
    kind = known.kind if known is not None else devices.DeviceKind(spec.kind.value)
    if kind.value != spec.kind.value:
        report(
            f"its {model} cards are {kind.value}s but the pool's kind is {spec.kind.value}: fix the pool or the label"
        )
    memory = _device_memory(node_labels, known, report)
    unhealthy = _unhealthy(node_labels, annotations, count, report)
    _compare_allocatable(status, spec.resource_name, count, unhealthy, report)
    wiring = links or (known.links if known is not None else devices.PCIE_ONLY)
    cards = tuple(
        devices.Device(i, kind, spec.resource_name, model, memory, wiring.group_of(i), i not in unhealthy)
        for i in range(count)
    )
    return cards, links


def _count(node_labels: Mapping[str, str], status: Mapping[str, Any], resource: str, report: Report) -> int:
    raw = (status.get("capacity") or {}).get(resource)
    if raw is not None:
        try:
            return quantities.count(raw)
        except ValueError:
            report(f"status.capacity[{resource}]={raw!r} is not a whole count; the node is read without cards")
            return 0
    fallback = node_labels.get(vendors.GPU_COUNT)
    if fallback is None:
        return 0
    if not _INDEX.match(fallback):
        report(f"label {vendors.GPU_COUNT}={fallback!r} is not a number; the node is read without cards")
        return 0
    report(
        f"status.capacity has no {resource} (is the device plugin running?); "
        f"counting {fallback} cards from label {vendors.GPU_COUNT}"
    )
    return int(fallback)


def _model(
    node_labels: Mapping[str, str], spec: resources.AcceleratorPoolSpec, report: Report
) -> tuple[str, devices.LinkTopology | None]:
    override = node_labels.get(labels_.DEVICE_MODEL)
    if override:
        return override, None
    reading, problem = vendors.model(node_labels)
    if problem is not None:
        report(f"{problem}; set label {labels_.DEVICE_MODEL} to name the model")
    if reading is not None:
        return reading.model, reading.links
    if spec.device_model:
        return spec.device_model, None
    report(
        f"its card model is unknown: label it {labels_.DEVICE_MODEL}=<model> or set the pool's deviceModel; "
        f"its cards are read as model {UNKNOWN_MODEL!r}"
    )
    return UNKNOWN_MODEL, None


def _topology(rule: resources.LinkRule) -> devices.LinkTopology:
    return devices.LinkTopology(
        devices.Fabric(rule.fabric.value),
        group_size=rule.group_size,
        strict=rule.strict,
        pod_sizes=frozenset(rule.pod_sizes),
        large_pod=rule.large_pod,
    )


def _device_memory(node_labels: Mapping[str, str], known: devices.DeviceModel | None, report: Report) -> int:
    catalogue = known.memory_mib if known is not None else 0
    raw = node_labels.get(vendors.GPU_MEMORY)
    if raw is None:
        return catalogue
    if not _INDEX.match(raw):
        report(f"label {vendors.GPU_MEMORY}={raw!r} is not a number of MiB; using {catalogue} MiB per card")
        return catalogue
    return int(raw)


def _unhealthy(
    node_labels: Mapping[str, str], annotations: Mapping[str, str], count: int, report: Report
) -> frozenset[int]:
    found: set[int] = set()
    for where, text, separators in (
        ("label", node_labels.get(labels_.UNHEALTHY_CARDS), _SEPARATORS),
        ("annotation", annotations.get(labels_.UNHEALTHY_CARDS), re.compile(",")),
    ):
        for item in separators.split(text or ""):
            item = item.strip()
            if not item:
                continue
            if not _INDEX.match(item) or int(item) >= count:
                report(
                    f"{where} {labels_.UNHEALTHY_CARDS} names {item!r}, not a card index in 0..{count - 1}; "
                    "it is ignored"
                )
                continue
            found.add(int(item))
    return frozenset(found)


def _compare_allocatable(
    status: Mapping[str, Any], resource: str, count: int, unhealthy: frozenset[int], report: Report
) -> None:
    """Point out cards the device plugin holds back but no label names (their indices are unknown here)."""
    try:
        allocatable = quantities.count((status.get("allocatable") or {}).get(resource, count))
    except ValueError:
        return
    if count - allocatable > len(unhealthy):
        report(
            f"the device plugin marks {count - allocatable} of {count} {resource} unhealthy but "
            f"{labels_.UNHEALTHY_CARDS} names {len(unhealthy)}: label the failed cards' indices"
        )


def _taints(node_spec: Mapping[str, Any], report: Report) -> tuple[nodes_.Taint, ...]:
    """The node's taints as the scheduler honours them.

    Taints under ``archipelago.dev/`` (such as ``archipelago.dev/dedicated=true:NoSchedule``)
    dedicate a node to Archipelago: they keep kube-scheduler's pods off it, and Archipelago,
    which binds its pods itself, ignores them.
    """
    taints: list[nodes_.Taint] = []
    for raw in node_spec.get("taints") or ():
        key = raw.get("key") if isinstance(raw, Mapping) else None
        if isinstance(key, str) and key.startswith(labels_.PREFIX):
            continue
        try:
            if not key or not isinstance(key, str):
                raise ValueError("a taint needs a key")
            taint = nodes_.Taint(key, str(raw.get("value") or ""), str(raw.get("effect") or ""))
        except ValueError as error:
            report(f"spec.taints entry {raw!r} is ignored: {error}")
            continue
        taints.append(taint)
    if node_spec.get("unschedulable") and not any(
        t.key == UNSCHEDULABLE.key and t.effect == UNSCHEDULABLE.effect for t in taints
    ):
        taints.append(UNSCHEDULABLE)
    return tuple(taints)


def _strings(mapping: object) -> dict[str, str]:
    """A labels or annotations map, keeping only string values (JSON may carry anything)."""
    if not isinstance(mapping, Mapping):
        return {}
    return {str(k): v for k, v in mapping.items() if isinstance(v, str)}
