"""The harness itself: a tiny kopf operator end to end, and the emulator's API server semantics.

The tiny operator indexes nodes and, for each TrainingJob, creates one pod bound to the first
node, owned by the job, and reports the job Running; deleting the job deletes its pods.
"""

from __future__ import annotations

import json
from typing import Any

import kopf
import kubernetes
import pytest
import urllib3

from archipelago import api
from tests.operator import emulator as apiserver

NS = "team-a"
JOBS = (api.GROUP, api.VERSION, NS, "trainingjobs")
MAIN = {"name": "main", "image": "trainer:1"}


def tiny_operator(core: kubernetes.client.CoreV1Api) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.index("nodes", registry=registry, id="node_names")
    def node_names(name: str, **_: Any) -> dict[None, str]:
        return {None: name}

    @kopf.on.create(api.GROUP, api.VERSION, "trainingjobs", registry=registry, backoff=0.1)
    def start(body: kopf.Body, name: str, namespace: str, patch: kopf.Patch, node_names: kopf.Index, **_: Any) -> None:
        pod = {"metadata": {"name": f"{name}-worker-0", "labels": {"job": name}}, "spec": {"containers": [MAIN]}}
        pod["spec"]["nodeName"] = min(node_names[None])
        kopf.adopt(pod, owner=body)
        core.create_namespaced_pod(namespace, pod)
        patch.status["phase"] = "Running"

    @kopf.on.delete(api.GROUP, api.VERSION, "trainingjobs", registry=registry, backoff=0.1)
    def stop(name: str, namespace: str, **_: Any) -> None:
        for pod in core.list_namespaced_pod(namespace, label_selector=f"job={name}").items:
            core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=5)

    return registry


def job(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"replicaSets": [{"name": "worker", "replicas": 1}]}}


def pod(name: str, *, labels: dict[str, str] | None = None, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [MAIN], **({"nodeName": node} if node else {})}
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def gone(read: Any) -> bool:
    try:
        read()
    except kubernetes.client.ApiException as e:
        return status_of(e) == (404, "NotFound")
    return False


def status_of(e: kubernetes.client.ApiException) -> tuple[int, str]:
    return e.status, json.loads(e.body)["reason"]


# The operator, end to end.


def test_a_job_gets_a_pod_on_an_indexed_node_owned_by_the_job(operator, kubelet, core_v1, custom_objects, eventually):
    kubelet.add_node("n2")
    kubelet.add_node("n1")
    operator(tiny_operator(core_v1))
    created = custom_objects.create_namespaced_custom_object(*JOBS, job("train"))

    worker = eventually(lambda: core_v1.read_namespaced_pod("train-worker-0", NS))
    assert worker.spec.node_name == "n1"
    (owner,) = worker.metadata.owner_references
    assert (owner.api_version, owner.kind, owner.uid, owner.controller) == (
        "archipelago.dev/v1alpha1",
        "TrainingJob",
        created["metadata"]["uid"],
        True,
    )
    running = eventually(lambda: custom_objects.get_namespaced_custom_object_status(*JOBS, "train")["status"]["phase"])
    assert running == "Running"


def test_deleting_a_job_runs_its_finalizer_which_deletes_the_pods_with_a_grace_period(
    operator, kubelet, emulator, core_v1, custom_objects, eventually
):
    kubelet.add_node("n1")
    operator(tiny_operator(core_v1))
    custom_objects.create_namespaced_custom_object(*JOBS, job("train"))
    eventually(lambda: core_v1.read_namespaced_pod("train-worker-0", NS))
    eventually(lambda: custom_objects.get_namespaced_custom_object(*JOBS, "train")["metadata"].get("finalizers"))

    custom_objects.delete_namespaced_custom_object(*JOBS, "train")

    eventually(lambda: not core_v1.list_namespaced_pod(NS).items)
    eventually(lambda: gone(lambda: custom_objects.get_namespaced_custom_object(*JOBS, "train")))
    assert apiserver.Deletion("pods", NS, "train-worker-0", 5, None) in emulator.deletions


def test_an_injected_server_error_is_retried_until_the_pod_is_created(
    operator, kubelet, emulator, core_v1, custom_objects, eventually
):
    kubelet.add_node("n1")
    emulator.fail("POST", "pods", status=500, times=2)
    operator(tiny_operator(core_v1))
    custom_objects.create_namespaced_custom_object(*JOBS, job("train"))

    eventually(lambda: core_v1.read_namespaced_pod("train-worker-0", NS))
    statuses = [call.status for call in emulator.calls if (call.method, call.resource) == ("POST", "pods")]
    assert statuses == [500, 500, 201]


def test_a_restarted_operator_handles_new_jobs_and_not_old_ones_again(
    operator, kubelet, emulator, core_v1, custom_objects, eventually
):
    kubelet.add_node("n1")
    running = operator(tiny_operator(core_v1))
    custom_objects.create_namespaced_custom_object(*JOBS, job("first"))
    eventually(lambda: custom_objects.get_namespaced_custom_object_status(*JOBS, "first")["status"])  # handled
    running.stop()

    custom_objects.create_namespaced_custom_object(*JOBS, job("second"))  # while the operator is down
    running.start()

    eventually(lambda: custom_objects.get_namespaced_custom_object_status(*JOBS, "second")["status"])
    assert [pod.metadata.name for pod in core_v1.list_namespaced_pod(NS).items] == ["first-worker-0", "second-worker-0"]
    assert emulator.count("POST", "pods") == 2


# The emulator's API server semantics, through the real client.


def test_generation_counts_spec_changes_only(custom_objects):
    def generation(body: dict[str, Any]) -> int:
        return body["metadata"]["generation"]

    assert generation(custom_objects.create_namespaced_custom_object(*JOBS, job("j"))) == 1
    assert generation(custom_objects.patch_namespaced_custom_object(*JOBS, "j", {"spec": {"suspend": True}})) == 2
    labels = {"metadata": {"labels": {"a": "b"}}}
    assert generation(custom_objects.patch_namespaced_custom_object(*JOBS, "j", labels)) == 2
    status = {"status": {"phase": "Running"}}
    assert generation(custom_objects.patch_namespaced_custom_object_status(*JOBS, "j", status)) == 2


def test_only_the_status_subresource_writes_the_status(custom_objects):
    created = custom_objects.create_namespaced_custom_object(*JOBS, {**job("j"), "status": {"phase": "Failed"}})
    assert "status" not in created
    patched = custom_objects.patch_namespaced_custom_object(
        *JOBS, "j", {"spec": {"suspend": True}, "status": {"phase": "Failed"}}
    )
    assert "status" not in patched and patched["spec"]["suspend"] is True

    status = custom_objects.patch_namespaced_custom_object_status(
        *JOBS, "j", {"spec": {"suspend": False}, "status": {"phase": "Running"}}
    )
    assert status["status"] == {"phase": "Running"} and status["spec"]["suspend"] is True


def test_versions_increase_on_every_write_and_a_stale_version_conflicts(custom_objects):
    first = custom_objects.create_namespaced_custom_object(*JOBS, job("j"))["metadata"]["resourceVersion"]
    second = custom_objects.patch_namespaced_custom_object(*JOBS, "j", {"spec": {"suspend": True}})
    assert int(second["metadata"]["resourceVersion"]) > int(first)

    with pytest.raises(kubernetes.client.ApiException) as stale:
        custom_objects.patch_namespaced_custom_object(*JOBS, "j", {"metadata": {"resourceVersion": first}, "spec": {}})
    assert status_of(stale.value) == (409, "Conflict")
    test = [{"op": "test", "path": "/metadata/resourceVersion", "value": first}]
    with pytest.raises(kubernetes.client.ApiException) as failed:  # kopf's finalizer patches rely on this
        custom_objects.patch_namespaced_custom_object(*JOBS, "j", test, _content_type="application/json-patch+json")
    assert status_of(failed.value) == (422, "Invalid")


def test_creating_an_existing_name_conflicts_and_a_missing_object_is_not_found(core_v1, custom_objects):
    core_v1.create_namespaced_pod(NS, pod("p"))
    with pytest.raises(kubernetes.client.ApiException) as duplicate:
        core_v1.create_namespaced_pod(NS, pod("p"))
    assert status_of(duplicate.value) == (409, "AlreadyExists")
    for call in (
        lambda: core_v1.read_namespaced_pod("absent", NS),
        lambda: core_v1.patch_namespaced_pod("absent", NS, {"metadata": {"labels": {"a": "b"}}}),
        lambda: core_v1.delete_namespaced_pod("absent", NS),
        lambda: custom_objects.get_namespaced_custom_object(*JOBS, "absent"),
    ):
        with pytest.raises(kubernetes.client.ApiException) as missing:
            call()
        assert status_of(missing.value) == (404, "NotFound")


def test_the_schema_hook_rejects_an_invalid_write_with_422_and_keeps_the_object(emulator, custom_objects):
    emulator.validate = lambda plural, body: (
        [] if body["spec"].get("replicaSets") else ["spec.replicaSets: Required value"]
    )
    with pytest.raises(kubernetes.client.ApiException) as rejected:
        custom_objects.create_namespaced_custom_object(*JOBS, {"metadata": {"name": "j"}, "spec": {}})
    assert status_of(rejected.value) == (422, "Invalid")
    assert "spec.replicaSets: Required value" in json.loads(rejected.value.body)["message"]
    assert not custom_objects.list_namespaced_custom_object(*JOBS)["items"]

    custom_objects.create_namespaced_custom_object(*JOBS, job("j"))
    with pytest.raises(kubernetes.client.ApiException) as rejected:
        custom_objects.patch_namespaced_custom_object(*JOBS, "j", {"spec": {"replicaSets": None}})
    assert status_of(rejected.value) == (422, "Invalid")
    assert custom_objects.get_namespaced_custom_object(*JOBS, "j")["spec"]["replicaSets"]


def test_label_and_field_selectors_filter_lists_and_collection_deletes(core_v1):
    core_v1.create_namespaced_pod(NS, pod("a", labels={"app": "a", "tier": "x"}, node="n1"))
    core_v1.create_namespaced_pod(NS, pod("b", labels={"app": "b"}, node="n2"))
    core_v1.create_namespaced_pod("other", pod("c"))

    def names(**selectors: str) -> list[str]:
        return sorted(p.metadata.name for p in core_v1.list_pod_for_all_namespaces(**selectors).items)

    assert names(label_selector="app=a") == ["a"]
    assert names(label_selector="app,!tier") == ["b"]
    assert names(label_selector="app in (a,b),app!=b") == ["a"]
    assert names(field_selector="spec.nodeName=n2") == ["b"]
    assert names(field_selector="spec.nodeName=") == ["c"]
    assert names(field_selector="metadata.namespace=other") == ["c"]
    core_v1.delete_collection_namespaced_pod(NS, label_selector="app=b")
    assert names() == ["a", "c"]


def test_a_watch_resumes_after_the_version_it_is_given(core_v1):
    core_v1.create_namespaced_pod(NS, pod("before"))
    version = core_v1.list_namespaced_pod(NS).metadata.resource_version
    core_v1.create_namespaced_pod(NS, pod("after"))
    core_v1.delete_namespaced_pod("before", NS)

    seen = []
    for event in kubernetes.watch.Watch().stream(
        core_v1.list_namespaced_pod, NS, resource_version=version, timeout_seconds=5
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:
            break
    assert seen == [("ADDED", "after"), ("DELETED", "before")]


def test_deletions_are_recorded_with_their_grace_period_and_finalizers_hold_the_object(
    emulator, core_v1, custom_objects
):
    core_v1.create_namespaced_pod(NS, pod("p"))
    core_v1.create_namespaced_pod(NS, pod("q"))
    core_v1.delete_namespaced_pod("p", NS, grace_period_seconds=0)
    core_v1.delete_namespaced_pod(
        "q", NS, body=kubernetes.client.V1DeleteOptions(grace_period_seconds=7, propagation_policy="Foreground")
    )
    custom_objects.create_namespaced_custom_object(
        *JOBS, {**job("j"), "metadata": {"name": "j", "finalizers": ["test/hold"]}}
    )
    custom_objects.delete_namespaced_custom_object(*JOBS, "j")

    held = custom_objects.get_namespaced_custom_object(*JOBS, "j")["metadata"]
    assert held["deletionTimestamp"] and held["deletionGracePeriodSeconds"] == 0
    custom_objects.patch_namespaced_custom_object(*JOBS, "j", {"metadata": {"finalizers": None}})
    assert not custom_objects.list_namespaced_custom_object(*JOBS)["items"]
    assert emulator.deletions == [
        apiserver.Deletion("pods", NS, "p", 0, None),
        apiserver.Deletion("pods", NS, "q", 7, "Foreground"),
        apiserver.Deletion("trainingjobs", NS, "j", None, None),
    ]


def test_binding_sets_the_node_and_a_stall_times_the_client_out(emulator, core_v1):
    core_v1.create_namespaced_pod(NS, pod("p"))
    target = kubernetes.client.V1ObjectReference(kind="Node", name="n1")
    binding = kubernetes.client.V1Binding(metadata=kubernetes.client.V1ObjectMeta(name="p"), target=target)
    core_v1.create_namespaced_pod_binding("p", NS, binding, _preload_content=False)
    assert core_v1.read_namespaced_pod("p", NS).spec.node_name == "n1"

    emulator.stall("GET", "pods", name="p", seconds=5)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        core_v1.read_namespaced_pod("p", NS, _request_timeout=0.2)
    assert core_v1.read_namespaced_pod("p", NS).metadata.name == "p"


def test_garbage_collection_deletes_dependents_when_enabled(emulator, core_v1, custom_objects):
    emulator.collect_garbage = True
    owner = custom_objects.create_namespaced_custom_object(*JOBS, job("j"))
    dependent = pod("p")
    kopf.adopt(dependent, owner=owner)
    core_v1.create_namespaced_pod(NS, dependent)
    custom_objects.delete_namespaced_custom_object(*JOBS, "j")

    assert not core_v1.list_namespaced_pod(NS).items
    assert emulator.deletions[-1] == apiserver.Deletion("pods", NS, "p", None, "Background", garbage_collected=True)
