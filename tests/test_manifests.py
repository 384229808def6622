"""The pod a placement creates: bound, owned, annotated, and told which cards to use."""

from archipelago import cluster, manifests, queueing
from archipelago.api import labels, resources
from archipelago.cluster import devices, ledger, nodes
from tests.workload_builders import make_job, make_service


def one_node(model: str = "H800") -> cluster.Cluster:
    return cluster.build([nodes.Node("gpu-0", 64_000, 512_000, devices.cards(model, 8), pool="h800")])


def build(body, allocation, kind=resources.TRAINING_JOB, role="worker", index=1):
    w = queueing.read(kind, body)
    template = (
        body["spec"]["replicaSets"][-1]["template"] if kind is resources.TRAINING_JOB else body["spec"]["template"]
    )
    return manifests.pod(w, role, index, template, allocation, one_node(), gang=w.key, gang_pods=2, started_at="t")


def whole(pod="team-a/llm-worker-1", cards=(4, 5, 6, 7)):
    return ledger.Allocation(pod, 0, 4000, 16384, tuple(ledger.CardShare(c, 1000, 81920) for c in cards))


def test_a_worker_pod_is_bound_owned_and_annotated():
    pod = build(make_job(priority_class="high"), whole())
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "llm-worker-1" and meta["namespace"] == "team-a"
    assert spec["nodeName"] == "gpu-0" and spec["priorityClassName"] == "high"
    assert meta["ownerReferences"][0] | {} == {
        "apiVersion": "archipelago.dev/v1alpha1",
        "kind": "TrainingJob",
        "name": "llm",
        "uid": "uid-llm",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert meta["labels"][labels.ROLE] == "worker" and meta["labels"][labels.INDEX] == "1"
    assert meta["labels"]["app"] == "train", "the template's labels are kept"
    assert meta["annotations"][labels.POD_CARDS] == "4,5,6,7"
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "4,5,6,7"} in spec["containers"][0]["env"]
    assert "nvidia.com/gpu" not in str(spec["containers"][0]["resources"]), "cards are ours, not the device plugin's"
    assert {"name": "ARCHIPELAGO_INDEX", "value": "1"} in spec["containers"][0]["env"]
    assert (spec["hostname"], spec["subdomain"]) == ("llm-worker-1", "llm")


def test_a_job_gets_a_headless_service_for_its_pod_names():
    w = queueing.read(resources.TRAINING_JOB, make_job())
    service = manifests.service(w)
    assert service["spec"]["clusterIP"] == "None" and service["metadata"]["name"] == "llm"
    assert service["spec"]["selector"] == {labels.JOB_KIND: "TrainingJob", labels.JOB_NAME: "llm"}
    assert manifests.service(queueing.read(resources.TRAINING_JOB, make_job("7b-tune"))) is None


def test_the_checkpoint_grace_and_signal_reach_the_pod():
    pod = build(make_job(grace=120, signal="SIGUSR1"), whole())
    spec = pod["spec"]
    assert spec["terminationGracePeriodSeconds"] == 120
    assert spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1].startswith("kill -10 1")


def test_sigterm_needs_no_hook():
    pod = build(make_job(signal="SIGTERM"), whole())
    assert "lifecycle" not in pod["spec"]["containers"][0]


def test_an_ascend_pod_gets_its_runtime_variable():
    w = queueing.read(resources.TRAINING_JOB, make_job())
    npu = cluster.build([nodes.Node("npu-0", 64_000, 512_000, devices.cards("Ascend910B", 8))])
    a = ledger.Allocation("team-a/llm-worker-0", 0, 0, 0, tuple(ledger.CardShare(c, 1000) for c in (0, 1, 2, 3)))
    pod = manifests.pod(
        w, "worker", 0, {"spec": {"containers": [{"name": "m"}]}}, a, npu, gang=w.key, gang_pods=1, started_at="t"
    )
    assert {"name": "ASCEND_VISIBLE_DEVICES", "value": "0,1,2,3"} in pod["spec"]["containers"][0]["env"]


def test_an_inference_replica_records_its_share():
    share = ledger.Allocation("team-a/chat-server-3", 0, 2000, 8192, (ledger.CardShare(2, 250, 16384),))
    pod = build(make_service(), share, kind=resources.INFERENCE_SERVICE, role="server", index=3)
    assert pod["metadata"]["name"] == "chat-server-3"
    assert pod["metadata"]["annotations"][labels.POD_MILLI] == "250"
    assert pod["metadata"]["annotations"][labels.POD_DEVICE_MEMORY] == "16384"
    assert "terminationGracePeriodSeconds" not in pod["spec"]
