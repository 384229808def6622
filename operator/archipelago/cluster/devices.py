"""Accelerator cards: what a card is, how cards in one server are wired, and known models.

Units: device memory in MiB; card shares in milli-cards (1000 = one whole card).
"""

from __future__ import annotations

import dataclasses
import enum
import functools

MILLI_PER_CARD = 1000
"""One whole card, in milli-cards."""


class DeviceKind(enum.StrEnum):
    GPU = "GPU"
    NPU = "NPU"


class Fabric(enum.StrEnum):
    """The intra-node interconnect that joins the cards of one link group."""

    NVLINK = "NVLink"
    HCCS = "HCCS"
    PCIE = "PCIe"


@dataclasses.dataclass(frozen=True, slots=True)
class LinkTopology:
    """How the cards of one server are wired into link groups, and the pod shapes that suit them.

    Cards ``[k * group_size, (k + 1) * group_size)`` form link group ``k``. Examples: an HGX
    board joins 8 GPUs through NVSwitch (``group_size=8``); an Ascend 910 server has two HCCS
    rings of 4 (``group_size=4``, ``strict=True``); PCIe-only cards have no peer links
    (``group_size=1``).

    ``strict`` means a multi-card pod that fits inside one group must sit inside one group;
    otherwise staying inside one group is only preferred. ``pod_sizes`` lists the card counts a
    pod may ask for on this model (empty: any). ``large_pod`` is the card count every pod must
    take when a gang needs more cards than one server holds (0: no rule). Both are Huawei's
    Ascend 910 affinity rules: 1, 2 or 4 cards inside one HCCS ring, 8 as a whole server, and
    more than 8 only in multiples of 8 with 8 per pod (Ascend "Affinity scheduling" guide for
    the Ascend device plugin and Volcano).
    """

    fabric: Fabric
    group_size: int
    strict: bool = False
    pod_sizes: frozenset[int] = frozenset()
    large_pod: int = 0

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"group_size must be at least 1, got {self.group_size}")
        object.__setattr__(self, "pod_sizes", frozenset(self.pod_sizes))
        if any(size < 1 for size in self.pod_sizes) or self.large_pod < 0:
            raise ValueError("pod_sizes must be positive card counts and large_pod must not be negative")

    def group_of(self, card: int) -> int:
        return card // self.group_size

    def admits(self, cards: int, gang_cards: int, node_cards: int) -> str | None:
        """Why a pod of ``cards`` cards in a gang of ``gang_cards`` cards breaks the rules, or None.

        ``node_cards`` is the card count of one server of this model.
        """
        if self.pod_sizes and cards not in self.pod_sizes:
            sizes = ", ".join(str(s) for s in sorted(self.pod_sizes))
            return f"a pod takes {sizes} cards, not {cards}"
        if self.large_pod and gang_cards > node_cards and cards != self.large_pod:
            return f"a gang of more than {node_cards} cards takes {self.large_pod} cards per pod, not {cards}"
        return None


PCIE_ONLY = LinkTopology(Fabric.PCIE, group_size=1)


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceModel:
    """Static facts about one accelerator model.

    ``memory_mib`` is 0 when the vendor does not publish it (the trace's undisclosed G1-G3);
    such cards never satisfy a device-memory request.
    """

    name: str
    kind: DeviceKind
    resource: str
    memory_mib: int
    links: LinkTopology = PCIE_ONLY


_NVIDIA = "nvidia.com/gpu"
_NVLINK8 = LinkTopology(Fabric.NVLINK, group_size=8)
_HCCS_RINGS = LinkTopology(Fabric.HCCS, group_size=4, strict=True, pod_sizes=frozenset({1, 2, 4, 8}), large_pod=8)
_HCCS_DOMAINS8 = LinkTopology(
    Fabric.HCCS, group_size=8, strict=True, pod_sizes=frozenset({1, 2, 4, 8, 16}), large_pod=16
)

# Memory figures are the vendors' data-sheet values (GiB x 1024).
CATALOGUE: dict[str, DeviceModel] = {
    model.name: model
    for model in (
        DeviceModel("H800", DeviceKind.GPU, _NVIDIA, 80 * 1024, _NVLINK8),
        DeviceModel("H100-SXM5-80GB", DeviceKind.GPU, _NVIDIA, 80 * 1024, _NVLINK8),
        DeviceModel("A100-SXM4-80GB", DeviceKind.GPU, _NVIDIA, 80 * 1024, _NVLINK8),
        DeviceModel("A800-SXM4-80GB", DeviceKind.GPU, _NVIDIA, 80 * 1024, _NVLINK8),
        DeviceModel("A100-SXM4-40GB", DeviceKind.GPU, _NVIDIA, 40 * 1024, _NVLINK8),
        DeviceModel("V100M32", DeviceKind.GPU, _NVIDIA, 32 * 1024, _NVLINK8),
        DeviceModel("V100M16", DeviceKind.GPU, _NVIDIA, 16 * 1024, _NVLINK8),
        DeviceModel("A10", DeviceKind.GPU, _NVIDIA, 24 * 1024),
        DeviceModel("T4", DeviceKind.GPU, _NVIDIA, 16 * 1024),
        DeviceModel("P100", DeviceKind.GPU, _NVIDIA, 16 * 1024),
        DeviceModel("L40S", DeviceKind.GPU, _NVIDIA, 48 * 1024),
        DeviceModel("Ascend910", DeviceKind.NPU, "huawei.com/Ascend910", 32 * 1024, _HCCS_RINGS),
        DeviceModel("Ascend910B", DeviceKind.NPU, "huawei.com/Ascend910", 64 * 1024, _HCCS_RINGS),
        # 16-card boxes: two 8-card HCCS domains.
        DeviceModel("Ascend910C", DeviceKind.NPU, "huawei.com/Ascend910", 64 * 1024, _HCCS_DOMAINS8),
    )
}


def model(name: str) -> DeviceModel:
    """The catalogue entry for ``name``, or a PCIe GPU with unknown memory for unknown names.

    Traces name undisclosed models (G1, G2, ...); they are kept as distinct models, but no
    memory or link facts are invented for them.
    """
    known = CATALOGUE.get(name)
    return known if known is not None else _unknown(name)


@functools.lru_cache(maxsize=1024)
def _unknown(name: str) -> DeviceModel:
    """One entry per unknown name, made once: the placers ask for it per node and per cycle."""
    return DeviceModel(name, DeviceKind.GPU, _NVIDIA, memory_mib=0)


@dataclasses.dataclass(frozen=True, slots=True)
class Device:
    """One card on a node.

    ``link_group`` identifies the intra-node link domain (NVLink domain, HCCS ring) that the
    card belongs to; cards of different groups talk over PCIe or the network.
    """

    index: int
    kind: DeviceKind
    resource: str
    model: str
    memory_mib: int
    link_group: int = 0
    healthy: bool = True


def cards(
    device_model: DeviceModel | str, count: int, *, unhealthy: frozenset[int] = frozenset()
) -> tuple[Device, ...]:
    """``count`` cards of one model, numbered from 0, with link groups from the model's topology."""
    spec = model(device_model) if isinstance(device_model, str) else device_model
    if count < 0:
        raise ValueError(f"card count must not be negative, got {count}")
    if any(not 0 <= i < count for i in unhealthy):
        raise ValueError(f"unhealthy card indices must be in 0..{count - 1}, got {sorted(unhealthy)}")
    return tuple(
        Device(
            index=i,
            kind=spec.kind,
            resource=spec.resource,
            model=spec.name,
            memory_mib=spec.memory_mib,
            link_group=spec.links.group_of(i),
            healthy=i not in unhealthy,
        )
        for i in range(count)
    )
