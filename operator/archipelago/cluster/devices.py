"""Accelerator cards: what a card is, how cards in one server are wired, and known models.

Units: device memory in MiB; card shares in milli-cards (1000 = one whole card).
"""

from __future__ import annotations

import dataclasses
import enum

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
    """How the cards of one server are wired into link groups.

    Cards ``[k * group_size, (k + 1) * group_size)`` form link group ``k``. Examples: an HGX
    board joins 8 GPUs through NVSwitch (``group_size=8``); an Ascend 910 server has two HCCS
    rings of 4 (``group_size=4``, ``strict=True``, Huawei's "Ascend 910 affinity rules");
    PCIe-only cards have no peer links (``group_size=1``).

    ``strict`` means a multi-card pod that fits inside one group must sit inside one group;
    otherwise staying inside one group is only preferred.
    """

    fabric: Fabric
    group_size: int
    strict: bool = False

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"group_size must be at least 1, got {self.group_size}")

    def group_of(self, card: int) -> int:
        return card // self.group_size


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
_HCCS_RINGS = LinkTopology(Fabric.HCCS, group_size=4, strict=True)
_HCCS_DOMAINS8 = LinkTopology(Fabric.HCCS, group_size=8, strict=True)

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
    if known is not None:
        return known
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
