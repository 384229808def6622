"""Fake device discovery: make kind workers look like 8-GPU and 8-NPU servers, without the hardware.

On a real cluster, vendor software tells Kubernetes what a node's accelerators are:

- the device plugin (NVIDIA's k8s-device-plugin, the Ascend Device Plugin) registers the cards
  with the kubelet, which reports them as an extended resource in the Node's
  ``status.capacity`` and ``status.allocatable`` (``nvidia.com/gpu: 8``, ``huawei.com/Ascend910: 8``);
- GPU Feature Discovery labels an NVIDIA node ``nvidia.com/gpu.product`` (``NVIDIA-H800``),
  ``nvidia.com/gpu.memory`` (MiB per card) and ``nvidia.com/gpu.count``;
- the Ascend Device Plugin labels an NPU node ``accelerator=huawei-Ascend910``, and MindCluster's
  ``accelerator-type`` names the server form (``module-910b-8``: an Atlas 800T A2, eight
  Ascend 910B in two HCCS rings of four).

This program writes the same labels and resources onto the Node objects, from
``fake-devices.yaml`` (node name -> kind, model, count, memoryMiB). The resources are patched
into the node's status, as the Kubernetes task "Advertise Extended Resources for a Node" does;
the kubelet keeps a capacity it did not register and copies it into ``allocatable``. A kubelet
that re-registers its node (a restart) zeroes them: run this again.

It fakes discovery, not allocation. No device plugin registers with the kubelet and no
``/dev/nvidia*`` or ``/dev/davinci*`` exists, so nothing could hand a container a card. Archipelago
does not ask for that: its pods never request the extended resource; it chooses the cards itself,
binds the pod, and names them in ``NVIDIA_VISIBLE_DEVICES`` / ``ASCEND_VISIBLE_DEVICES``, which
the plain container runtime of a kind node ignores. So the e2e suite shows what the operator
decides, binds and reports, not that a container sees its cards.

The vendors' label names are spelled out here, not imported from ``archipelago.inventory``: this
stands in for the vendors' software, and the suite must fail if the operator reads labels the
vendors do not publish.

Usage (the cluster of the current kubeconfig context, or ``--kubeconfig``/``--context``)::

    python e2e/fake_device_plugin.py [--config e2e/fake-devices.yaml] [--dry-run]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import kubernetes
import yaml

CONFIG = pathlib.Path(__file__).with_name("fake-devices.yaml")
GPU, NPU = "GPU", "NPU"
RESOURCES = {GPU: "nvidia.com/gpu", NPU: "huawei.com/Ascend910"}
"""The extended resource each kind's device plugin advertises."""
ASCEND_FORMS = {
    ("Ascend910B", 8): "module-910b-8",
    ("Ascend910B", 16): "module-910b-16",
    ("Ascend910", 8): "module",
    ("Ascend910", 4): "half",
}
"""MindCluster's ``accelerator-type`` of an Ascend server, by (model, NPUs per server)."""
MERGE_PATCH = "application/merge-patch+json"
"""RFC 7386: a patch adds its keys and leaves the rest of the Node (other labels, cpu, memory) as it is."""
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_FIELDS = {"kind", "model", "count", "memoryMiB"}


class ConfigError(ValueError):
    """A fake-devices file that cannot be used; the message names the file, the node and the field."""


@dataclasses.dataclass(frozen=True)
class Server:
    """The accelerators one node pretends to have.

    ``memory_mib`` is the device memory per card that GPU Feature Discovery would report; None
    for an NPU, whose labels carry none.
    """

    node: str
    kind: str
    model: str
    count: int
    memory_mib: int | None = None

    def labels(self) -> dict[str, str]:
        """The labels the vendors' discovery would put on the node."""
        if self.kind == GPU:
            return {
                "nvidia.com/gpu.product": f"NVIDIA-{self.model}",
                "nvidia.com/gpu.memory": str(self.memory_mib),
                "nvidia.com/gpu.count": str(self.count),
            }
        return {"accelerator": "huawei-Ascend910", "accelerator-type": ASCEND_FORMS[self.model, self.count]}

    def resources(self) -> dict[str, str]:
        """The extended resource the device plugin would advertise, as a quantity."""
        return {RESOURCES[self.kind]: str(self.count)}

    def patches(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The merge patches of the Node object and of its status subresource."""
        return (
            {"metadata": {"labels": self.labels()}},
            {"status": {"capacity": self.resources(), "allocatable": self.resources()}},
        )


def read(path: pathlib.Path = CONFIG) -> list[Server]:
    """The servers ``path`` describes, in its order; raises ``ConfigError`` naming what is wrong."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: {error}") from error
    nodes = document.get("nodes") if isinstance(document, Mapping) else None
    if not isinstance(nodes, Mapping) or not nodes:
        raise ConfigError(f"{path}: needs a mapping 'nodes' of node name -> {{kind, model, count, memoryMiB}}")
    return [_server(path, str(node), entry) for node, entry in nodes.items()]


def _server(path: pathlib.Path, node: str, entry: object) -> Server:
    where = f"{path}: nodes.{node}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: must be a mapping with kind, model, count and (GPU) memoryMiB")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    kind, model, count, memory = entry.get("kind"), entry.get("model"), entry.get("count"), entry.get("memoryMiB")
    if kind not in RESOURCES:
        raise ConfigError(f"{where}.kind: must be GPU or NPU, got {kind!r}")
    if not isinstance(model, str) or not _LABEL_VALUE.match(f"NVIDIA-{model}"):  # GFD's product label value
        raise ConfigError(f"{where}.model: must be a card model usable in a label value, got {model!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"{where}.count: must be a whole number >= 1, got {count!r}")
    if kind == GPU and (isinstance(memory, bool) or not isinstance(memory, int) or memory < 1):
        raise ConfigError(f"{where}.memoryMiB: a GPU needs its memory per card in MiB (>= 1), got {memory!r}")
    if kind == NPU and memory is not None:
        raise ConfigError(f"{where}.memoryMiB: the Ascend labels publish no device memory; remove it")
    if kind == NPU and (model, count) not in ASCEND_FORMS:
        known = ", ".join(f"{m} x {c}" for m, c in ASCEND_FORMS)
        raise ConfigError(f"{where}: no Ascend server form has {count} x {model}; known: {known}")
    return Server(node, kind, model, count, memory)


def publish(core: Any, server: Server) -> None:
    """Write ``server``'s labels and resources onto its Node through ``core`` (a ``CoreV1Api``)."""
    node_patch, status_patch = server.patches()
    core.patch_node(server.node, node_patch, _content_type=MERGE_PATCH)
    core.patch_node_status(server.node, status_patch, _content_type=MERGE_PATCH)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=pathlib.Path, default=CONFIG, help="node -> devices (default: %(default)s)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("--dry-run", action="store_true", help="print the patches as JSON; touch no cluster")
    args = parser.parse_args(argv)
    try:
        servers = read(args.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        patches = {s.node: dict(zip(("node", "node/status"), s.patches(), strict=True)) for s in servers}
        print(json.dumps(patches, indent=2))
        return 0

    try:
        client = kubernetes.config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
    except kubernetes.config.ConfigException as error:
        print(f"error: no cluster to write to: {error}", file=sys.stderr)
        return 2
    core = kubernetes.client.CoreV1Api(client)
    for server in servers:
        try:
            publish(core, server)
        except kubernetes.client.ApiException as error:
            hint = " (is this the cluster of e2e/kind-config.yaml?)" if error.status == 404 else ""
            print(f"error: node {server.node}: {error.status} {error.reason}{hint}", file=sys.stderr)
            return 1
        print(f"{server.node}: {server.count} x {server.model} as {RESOURCES[server.kind]}, labels {server.labels()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
