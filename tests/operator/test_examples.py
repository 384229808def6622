"""The example manifests in crds/examples/ run as written, on a cluster labelled as device plugins label it."""

from __future__ import annotations

import pathlib

import yaml

from archipelago import api
from tests.operator.cluster import PLURALS, Cluster

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "crds" / "examples"


def test_every_example_workload_runs(core_v1, custom_objects, kubelet, operator, api_client, eventually):
    cluster = Cluster(core_v1, custom_objects, kubelet, operator, api_client)
    gpu = {"nvidia.com/gpu.product": "NVIDIA-H800", "nvidia.com/gpu.count": "8"}
    for i in range(6):  # the pretraining job takes four whole servers of one island
        labels = {**gpu, "archipelago.dev/spine": "s1", "archipelago.dev/island": "a" if i < 4 else "b"}
        kubelet.add_node(f"h800-{i}", labels=labels, capacity={"nvidia.com/gpu": "8", "memory": "2Ti"})
    npu = {"accelerator": "huawei-Ascend910", "accelerator-type": "module-910b-8"}
    for i in range(4):
        labels = {**npu, "archipelago.dev/spine": "s2", "archipelago.dev/island": "c"}
        kubelet.add_node(f"a910b-{i}", labels=labels, capacity={"huawei.com/Ascend910": "8"})
    for name, value in (("training-high", 1000), ("serving-critical", 2000), ("batch-low", 10)):
        cluster.priority_class(name, value)
    manifests = [yaml.safe_load(path.read_text()) for path in sorted(EXAMPLES.glob("*.yaml"))]
    for body in (m for m in manifests if m["kind"] == "AcceleratorPool"):
        custom_objects.create_cluster_custom_object(api.GROUP, api.VERSION, "acceleratorpools", body)
    cluster.start()
    workloads = [m for m in manifests if m["kind"] != "AcceleratorPool"]
    for body in workloads:
        plural = PLURALS[body["kind"]]
        custom_objects.create_namespaced_custom_object(
            api.GROUP, api.VERSION, body["metadata"]["namespace"], plural, body
        )

    for body in workloads:
        meta = body["metadata"]
        plural = PLURALS[body["kind"]]

        def running(meta=meta, plural=plural):
            obj = custom_objects.get_namespaced_custom_object(
                api.GROUP, api.VERSION, meta["namespace"], plural, meta["name"]
            )
            return (obj.get("status") or {}).get("phase") == "Running" and obj["status"]

        status = eventually(running, timeout=15)
        assert status["placement"]["pods"] >= 1, meta["name"]
    pretrain = [p for p in core_v1.list_namespaced_pod("llm-research").items]
    assert len(pretrain) == 5
    assert {
        core_v1.read_node(p.spec.node_name).metadata.labels["archipelago.dev/island"]
        for p in pretrain
        if "worker" in p.metadata.name
    } == {"a"}
    npu_pods = core_v1.list_namespaced_pod("vision").items
    assert npu_pods and all(any(e.name == "ASCEND_VISIBLE_DEVICES" for e in p.spec.containers[0].env) for p in npu_pods)
