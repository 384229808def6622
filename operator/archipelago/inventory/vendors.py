"""What vendors' node labels say about a node's cards: NVIDIA GPU Feature Discovery and Ascend.

NVIDIA: GPU Feature Discovery (GFD, now part of NVIDIA/k8s-device-plugin,
``docs/gpu-feature-discovery/README.md``) labels a node with ``nvidia.com/gpu.product`` (the
NVML name with spaces replaced by ``-``: ``NVIDIA-H800``, ``NVIDIA-H100-80GB-HBM3``,
``NVIDIA-A100-SXM4-80GB``, ``Tesla-V100-SXM2-32GB``; older releases omit the vendor prefix,
time-slicing may append ``-SHARED``, MIG appends ``-MIG-<profile>``), ``nvidia.com/gpu.memory``
(MiB per GPU) and ``nvidia.com/gpu.count``.

Ascend: the Ascend Device Plugin labels NPU nodes ``accelerator=huawei-Ascend910`` (also used for
910B and A3 boards), and MindCluster's Volcano plugin selects server forms by
``accelerator-type``: ``module`` (Atlas 800 training server, 8 NPUs; may be omitted), ``half``
(Atlas 800 half-populated, 4 NPUs), ``card`` (Atlas 300T training cards), ``module-910b-8``
(Atlas 800T/800I A2, 8 NPUs), ``module-910b-16`` (Atlas 200T A2 Box16), ``card-910b-2`` and
``card-910b-infer`` (A2 PCIe cards), ``module-a3-16`` (Atlas 800T/800I A3, A200T A3 Box8) and
``module-a3-16-super-pod`` / ``module-a3-8-super-pod`` (Atlas 900 A3 SuperPoD). Sources:
MindCluster's "kubernetes labels" table (hiascend.com, mindcluster ``dlug_guide_03_000126``:
accelerator values ``huawei-Ascend910/310/310P``, accelerator-type ``card``, ``module``,
``half``), the AscendJob YAML parameter reference in Ascend/mind-cluster (accelerator-type per
Atlas product) and the constants of ``component/ascend-for-volcano`` in Ascend/mind-cluster
(``Module910bx8AcceleratorType = "module-910b-8"``, ``Card910bx2AcceleratorType =
"card-910b-2"``, ``Module910A3x16AcceleratorType = "module-a3-16"``, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from archipelago.cluster import devices

GPU_PRODUCT = "nvidia.com/gpu.product"
GPU_MEMORY = "nvidia.com/gpu.memory"
GPU_COUNT = "nvidia.com/gpu.count"
ACCELERATOR = "accelerator"
ACCELERATOR_TYPE = "accelerator-type"
ASCEND910 = "huawei-Ascend910"

_GPU_PREFIXES = ("NVIDIA-", "Tesla-")
_GPU_SUFFIXES = ("-SHARED",)
GPU_ALIASES: dict[str, str] = {
    "H100-80GB-HBM3": "H100-SXM5-80GB",
    "V100-SXM2-32GB": "V100M32",
    "V100-SXM2-16GB": "V100M16",
    "P100-PCIE-16GB": "P100",
    "P100-SXM2-16GB": "P100",
}
"""GFD product names (vendor prefix removed) of catalogue models whose catalogue name differs."""


@dataclasses.dataclass(frozen=True, slots=True)
class AscendForm:
    """One Ascend server form named by ``accelerator-type``: its card model and, for PCIe cards, its links.

    ``links`` is None where the catalogue model's own rules hold (HCCS boards).
    """

    model: str
    cards: int
    links: devices.LinkTopology | None = None


ASCEND_FORMS: dict[str, AscendForm] = {
    "module": AscendForm("Ascend910", 8),
    "half": AscendForm("Ascend910", 4),
    "card": AscendForm("Ascend910", 2, devices.PCIE_ONLY),
    "module-910b-8": AscendForm("Ascend910B", 8),
    "module-910b-16": AscendForm("Ascend910B", 16),
    "card-910b-2": AscendForm("Ascend910B", 2, devices.PCIE_ONLY),
    "card-910b-infer": AscendForm("Ascend910B", 2, devices.PCIE_ONLY),
    "module-a3-16": AscendForm("Ascend910C", 16),
    "module-a3-16-super-pod": AscendForm("Ascend910C", 16),
    "module-a3-8-super-pod": AscendForm("Ascend910C", 8),
}
"""``accelerator-type`` values on ``accelerator=huawei-Ascend910`` nodes. ``cards`` is the usual
NPU count of the form, for documentation only: the count is read from the node's capacity."""
ASCEND_DEFAULT_FORM = "module"
"""The form of an ``accelerator=huawei-Ascend910`` node without ``accelerator-type``: MindCluster
lets full Atlas 800 training servers omit the label."""


def gpu_model(product: str) -> str | None:
    """The catalogue model a GFD ``nvidia.com/gpu.product`` value names, or None.

    Tries the product itself, then without the ``NVIDIA-``/``Tesla-`` prefix and a ``-SHARED``
    suffix, exactly and through ``GPU_ALIASES``. No prefix matching: ``NVIDIA-H800-PCIe`` is not
    an ``H800`` (no NVLink board), and a MIG slice is not its parent card.
    """
    bare = product
    for prefix in _GPU_PREFIXES:
        bare = bare.removeprefix(prefix)
    for suffix in _GPU_SUFFIXES:
        bare = bare.removesuffix(suffix)
    for name in (product, bare, GPU_ALIASES.get(bare)):
        if name is not None and name in devices.CATALOGUE:
            return name
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """The card model vendor labels name, where it came from, and a form's link override."""

    model: str
    source: str
    links: devices.LinkTopology | None = None


def model(labels: Mapping[str, str]) -> tuple[Reading | None, str | None]:
    """The card model named by GFD or Ascend labels, and a problem (a sentence) if a label is unusable.

    GFD products outside the catalogue are kept verbatim as the model name; Ascend 310 nodes are
    named ``Ascend310``/``Ascend310P``, which the catalogue does not know. An unknown
    ``accelerator-type`` yields no model and a problem. Labels of neither vendor: ``(None, None)``.
    """
    product = labels.get(GPU_PRODUCT)
    if product:
        return Reading(gpu_model(product) or product, f"{GPU_PRODUCT}={product}"), None
    accelerator = labels.get(ACCELERATOR, "")
    if accelerator == ASCEND910:
        form_name = labels.get(ACCELERATOR_TYPE, ASCEND_DEFAULT_FORM)
        form = ASCEND_FORMS.get(form_name)
        if form is None:
            known = ", ".join(sorted(ASCEND_FORMS))
            return None, f"label {ACCELERATOR_TYPE}={form_name} is not a known Ascend server form ({known})"
        return Reading(form.model, f"{ACCELERATOR_TYPE}={form_name}", form.links), None
    if accelerator.startswith("huawei-Ascend"):
        return Reading(accelerator.removeprefix("huawei-"), f"{ACCELERATOR}={accelerator}"), None
    return None, None
