"""The kind e2e suite's files are well-formed and agree with each other, checked without a cluster.

``e2e/`` runs only where docker, kind, kubectl and helm are (``pytest e2e``); these checks run
everywhere, so a broken manifest or a worker without fake devices is found before anyone
creates a cluster. The manifests are validated as ``tests/test_crds.py`` validates the
examples, and the nodes that kind and the fake device plugin would make are read by the
operator's own inventory.
"""

from __future__ import annotations

import pathlib
from typing import Any

import kubernetes_validate
import pytest

from archipelago import inventory
from archipelago.api import resources
from e2e import cluster, fake_device_plugin
from e2e import test_kind as suite
from tests.support import schemas
from tests.test_crds import BY_KIND, KUBERNETES_VERSIONS, load

MANIFESTS = sorted(suite.MANIFESTS.rglob("*.yaml"))
POOL_LABEL = "archipelago.dev/pool"
DEDICATED = {"key": "archipelago.dev/dedicated", "value": "true", "effect": "NoSchedule"}


def documents(folder: str) -> list[dict[str, Any]]:
    return [doc for path in sorted((suite.MANIFESTS / folder).glob("*.yaml")) for doc in load(path)]


def pools() -> dict[str, resources.AcceleratorPoolSpec]:
    return {
        doc["metadata"]["name"]: resources.AcceleratorPoolSpec.model_validate(doc["spec"]) for doc in documents("pools")
    }


def pod_templates(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The PodTemplateSpecs of a TrainingJob or InferenceService; none for a pool."""
    if body["kind"] == "TrainingJob":
        return [r["template"] for r in body["spec"]["replicaSets"]]
    return [body["spec"]["template"]] if body["kind"] == "InferenceService" else []


def node_bodies() -> list[dict[str, Any]]:
    """The Node objects of the kind cluster once fake_device_plugin.py has run, as the API would serve them."""
    config, servers = cluster.read(), {s.node: s for s in fake_device_plugin.read()}
    bodies = []
    for name, node_labels in cluster.workers(config).items():
        node_patch, status_patch = servers[name].patches() if name in servers else ({}, {})
        resources_ = {"cpu": "8", "memory": "16Gi", **(status_patch.get("status") or {}).get("capacity", {})}
        bodies.append(
            {
                "metadata": {
                    "name": name,
                    "labels": {**node_labels, **(node_patch.get("metadata") or {}).get("labels", {})},
                },
                "spec": {"taints": cluster.taints(config)[name]},
                "status": {
                    "capacity": resources_,
                    "allocatable": resources_,
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
    return bodies


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: str(path.relative_to(suite.MANIFESTS)))
def test_every_manifest_validates_against_the_crds_or_kubernetes_schema(path):
    assert path.read_text(encoding="utf-8").startswith("#"), "each manifest opens with a comment saying what it shows"
    for body in load(path):
        if body["kind"] in BY_KIND:
            kind = BY_KIND[body["kind"]]
            assert schemas.validate(kind.plural, body) == []
            kind.spec.model_validate(body["spec"])
            for template in pod_templates(body):
                pod_template = {
                    "apiVersion": "v1",
                    "kind": "PodTemplate",
                    "metadata": {"name": "t"},
                    "template": template,
                }
                kubernetes_validate.validate(pod_template, KUBERNETES_VERSIONS[-1], strict=True)
                for container in template["spec"]["containers"]:
                    assert (container["image"], container["imagePullPolicy"]) == (suite.IMAGE, "Never"), (
                        "nothing is pulled"
                    )
        else:
            kubernetes_validate.validate(body, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_kind_workers_carry_the_levels_their_pools_and_workloads_use():
    config = cluster.read()
    assert [node["role"] for node in config["nodes"]].count("control-plane") == 1
    workers, taints, specs = cluster.workers(config), cluster.taints(config), pools()
    for name, spec in specs.items():
        members = [n for n, node_labels in workers.items() if spec.node_selector.items() <= node_labels.items()]
        assert members, f"pool {name} selects no kind worker"
        for member in members:
            assert set(spec.topology_levels) <= set(workers[member]), f"{member} lacks a level of pool {name}"
            assert DEDICATED in taints[member], f"{member} is not dedicated to Archipelago (README, 'The operator')"
    assert any(not node_labels for node_labels in workers.values()), "an untainted CPU worker runs the operator"
    for body in documents("workloads"):
        spec = body["spec"]
        levels = specs[spec["pool"]].topology_levels
        assert "topology" not in spec or spec["topology"]["level"] in levels, body["metadata"]["name"]


def test_the_fake_devices_cover_every_pool_worker_and_the_inventory_reads_them():
    config, specs = cluster.read(), pools()
    servers = {s.node: s for s in fake_device_plugin.read()}
    pool_workers = {n for n, node_labels in cluster.workers(config).items() if POOL_LABEL in node_labels}
    assert set(servers) == pool_workers

    read = inventory.cluster(node_bodies(), specs)

    assert read.problems == () and read.lost == ()
    for name in specs:
        models: dict[str, int] = {}
        for node in read.cluster.nodes:
            if node.pool == name:
                assert node.name in servers and servers[node.name].kind == specs[name].kind.value
                models[servers[node.name].model] = models.get(servers[node.name].model, 0) + servers[node.name].count
        assert read.pools[name].models == models, f"pool {name} reads other models than the fake devices publish"
    npu = next(node for node in read.cluster.nodes if servers[node.name].kind == fake_device_plugin.NPU)
    assert len({d.link_group for d in npu.devices}) == 2, "two HCCS rings of four"
    for body in documents("workloads"):
        assert set(body["spec"]["deviceModels"]) <= set(read.pools[body["spec"]["pool"]].models)


def test_the_island_job_fits_one_island_and_the_too_big_job_none():
    servers = {s.node: s for s in fake_device_plugin.read()}
    islands: dict[tuple[str, str], int] = {}
    for name, node_labels in cluster.workers(cluster.read()).items():
        if name in servers:
            key = (node_labels[suite.ISLAND], servers[name].model)
            islands[key] = islands.get(key, 0) + servers[name].count

    def need_and_room(file: str) -> tuple[int, list[int], int]:
        (body,) = load(suite.WORKLOADS / file)
        models = set(body["spec"]["deviceModels"])
        need = sum(r["replicas"] * r["cards"]["count"] for r in body["spec"]["replicaSets"])
        per_island = {island: 0 for island, _ in islands}
        for (island, model), cards in islands.items():
            per_island[island] += cards if model in models else 0
        return need, sorted(per_island.values()), sum(per_island.values())

    need, rooms, _ = need_and_room("island-job.yaml")
    assert rooms.count(max(rooms)) == 1 and need <= max(rooms), "exactly one island can hold it"
    need, rooms, total = need_and_room("too-big-job.yaml")
    assert max(rooms) < need <= total, "bigger than every island, not than the pool: TopologyTooSmall"


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({"kind": "NPU", "model": "Ascend910B", "count": 8, "memoryMiB": 65536}, "publish no device memory"),
        ({"kind": "GPU", "model": "H800", "count": 8}, "memoryMiB: a GPU needs its memory"),
        ({"kind": "NPU", "model": "Ascend910B", "count": 3}, "no Ascend server form has 3 x Ascend910B"),
        ({"kind": "TPU", "model": "v5e", "count": 4}, "kind: must be GPU or NPU"),
    ],
    ids=["npu memory", "gpu without memory", "npu form", "unknown kind"],
)
def test_the_fake_device_plugin_rejects_a_bad_entry_naming_it(tmp_path, entry, error):
    path = tmp_path / "devices.yaml"
    path.write_text(f"nodes: {{worker: {entry}}}\n".replace("'", '"'), encoding="utf-8")
    with pytest.raises(fake_device_plugin.ConfigError, match=f"nodes.worker.*{error}"):
        fake_device_plugin.read(pathlib.Path(path))
