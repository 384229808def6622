"""The operator end to end: the real kopf handlers and scheduling loop against the emulated API server.

Each test is one scenario from the operator's contract. Nodes carry GPU Feature Discovery labels,
pods are moved through their phases by a fake kubelet, and every write is checked against the
committed CRD schemas by the emulator.
"""

from __future__ import annotations

import pytest

from archipelago.api import labels
from tests.operator.cluster import NAMESPACE, Cluster
from tests.workload_builders import make_job, make_service


@pytest.fixture
def cluster(core_v1, custom_objects, kubelet, operator, api_client) -> Cluster:
    return Cluster(core_v1, custom_objects, kubelet, operator, api_client)


def cards_of(pod) -> set[int]:
    text = pod.metadata.annotations[labels.POD_CARDS]
    return {int(c) for c in text.split(",")} if text else set()


def env_of(pod) -> dict[str, str]:
    return {e.name: e.value for e in pod.spec.containers[0].env or ()}


def no_card_shared(pods) -> bool:
    """No two whole-card pods hold the same card of one node."""
    seen: set[tuple[str, int]] = set()
    for p in pods:
        for card in cards_of(p):
            if (p.spec.node_name, card) in seen:
                return False
            seen.add((p.spec.node_name, card))
    return True


def test_a_gang_is_placed_inside_one_island(cluster, eventually):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("b-0", island="b")
    cluster.node("b-1", island="b")
    cluster.start()
    cluster.create(
        make_job("llm", workers=2, cards=8, topology={"level": "archipelago.dev/island", "mode": "Required"})
    )

    pods = eventually(lambda: len(cluster.pods("llm")) == 2 and cluster.pods("llm"))
    assert [p.metadata.name for p in pods] == ["llm-worker-0", "llm-worker-1"]
    assert {cluster.island_of(p.spec.node_name) for p in pods} == {"b"}
    assert all(cards_of(p) == set(range(8)) for p in pods)
    assert env_of(pods[0])["NVIDIA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    assert pods[0].metadata.owner_references[0].kind == "TrainingJob"
    assert (pods[0].spec.hostname, pods[0].spec.subdomain) == ("llm-worker-0", "llm")
    service = cluster.core.read_namespaced_service("llm", NAMESPACE)
    assert service.spec.cluster_ip == "None" and service.spec.selector[labels.JOB_NAME] == "llm"
    status = eventually(
        lambda: cluster.status("TrainingJob", "llm").get("phase") == "Running" and cluster.status("TrainingJob", "llm")
    )
    assert status["placement"]["islands"] == ["b"] and status["placement"]["cards"] == 16
    assert cluster.condition("TrainingJob", "llm")["reason"] == "Placed"
    eventually(lambda: any(e.reason == "Placed" for e in cluster.events("llm")))


def test_a_gang_too_big_for_any_island_waits_and_says_why(cluster, eventually):
    cluster.pool()
    for name in ("a-0", "a-1", "b-0", "b-1"):
        cluster.node(name, island=name[0])
    cluster.start()
    cluster.create(
        make_job("huge", workers=3, cards=8, topology={"level": "archipelago.dev/island", "mode": "Required"})
    )

    condition = eventually(lambda: cluster.condition("TrainingJob", "huge"))
    assert (condition["status"], condition["reason"]) == ("False", "TopologyTooSmall")
    assert "24" in condition["message"] and "16" in condition["message"], condition["message"]
    assert cluster.status("TrainingJob", "huge")["phase"] == "Pending"
    assert "placement" not in cluster.status("TrainingJob", "huge")
    eventually(lambda: any(e.reason == "TopologyTooSmall" and e.type == "Warning" for e in cluster.events("huge")))
    assert cluster.pods("huge") == []


def test_a_higher_priority_gang_preempts_a_lower_one_with_its_grace_period(cluster, emulator, eventually):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("a-1", island="a")
    cluster.priority_class("low", 10)
    cluster.priority_class("high", 1000)
    cluster.start()
    cluster.create(make_job("tune", workers=2, priority_class="low", preemptible=True, grace=45, signal="SIGUSR1"))
    victims = eventually(lambda: len(cluster.pods("tune")) == 2 and cluster.pods("tune"))
    hook = victims[0].spec.containers[0].lifecycle.pre_stop._exec.command
    assert "kill -10 1" in hook[-1] and victims[0].spec.termination_grace_period_seconds == 45

    cluster.create(make_job("train", workers=2, priority_class="high"))

    delayed = eventually(lambda: cluster.condition("TrainingJob", "train"))
    assert delayed["reason"] == "PreemptionDelayed" and "once it has waited 3 s" in delayed["message"]
    assert len(cluster.pods("tune")) == 2, "nobody is evicted before the preemption delay is over"
    eventually(lambda: len(cluster.pods("train")) == 2)
    deletions = [d for d in emulator.deletions if d.name.startswith("tune-")]
    assert {d.name for d in deletions} == {"tune-worker-0", "tune-worker-1"}
    assert all(d.grace_period_seconds == 45 for d in deletions)
    preempted = eventually(lambda: cluster.condition("TrainingJob", "tune", "Preempted"))
    assert preempted["status"] == "True" and "team-a/train" in preempted["message"]
    status = eventually(
        lambda: (
            cluster.status("TrainingJob", "tune").get("phase") == "Pending" and cluster.status("TrainingJob", "tune")
        )
    )
    assert status["preemptions"] == 1
    scheduled = next(c for c in status["conditions"] if c["type"] == "Scheduled")
    assert scheduled["status"] == "False", "Pending and no longer Scheduled, in the same write"
    waiting = eventually(
        lambda: (
            cluster.condition("TrainingJob", "tune")["reason"] != "Preempted"
            and cluster.condition("TrainingJob", "tune")
        )
    )
    assert waiting["status"] == "False", "the victim is requeued and says why it waits"
    assert no_card_shared(cluster.pods())


def test_an_operator_restart_mid_placement_leaves_no_duplicates_and_rebuilds_the_ledger(cluster, emulator, eventually):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("a-1", island="a")
    running = cluster.start()
    emulator.stall(method="POST", resource="pods", name="llm-worker-1", seconds=1.5, times=1)
    cluster.create(make_job("llm", workers=2))
    eventually(lambda: cluster.pods("llm", live=False))  # the first pod exists, the second is in flight
    running.stop()

    running.start()
    pods = eventually(lambda: len(cluster.pods("llm")) == 2 and cluster.pods("llm"), timeout=15)
    assert len({p.metadata.name for p in cluster.pods(live=False)}) == len(cluster.pods(live=False))
    cluster.create(make_job("late", workers=1))
    condition = eventually(lambda: cluster.condition("TrainingJob", "late"))
    assert condition["reason"] == "InsufficientCapacity", "the rebuilt ledger knows both nodes are full"
    assert cluster.pods("late") == [] and no_card_shared(pods)


def test_a_lost_node_restarts_the_gang_elsewhere(cluster, kubelet, eventually):
    cluster.pool()
    for name in ("a-0", "a-1", "a-2"):
        cluster.node(name, island="a")
    cluster.start()
    cluster.create(make_job("llm", workers=2))
    first = eventually(lambda: len(cluster.pods("llm")) == 2 and cluster.pods("llm"))
    for p in first:
        kubelet.set_phase(p, "Running")
    bad = first[0].spec.node_name

    kubelet.node_ready(bad, False)

    eventually(lambda: cluster.status("TrainingJob", "llm").get("restarts") == 1)
    again = eventually(lambda: len(cluster.pods("llm")) == 2 and cluster.pods("llm"))
    assert bad not in {p.spec.node_name for p in again}
    assert any(e.reason == "NodeLost" for e in cluster.events("llm"))


def test_a_failed_pod_restarts_the_whole_gang_away_from_its_node_until_the_backoff_limit(cluster, kubelet, eventually):
    cluster.pool()
    for name in ("a-0", "a-1", "a-2"):
        cluster.node(name, island="a")
    cluster.start()
    cluster.create(make_job("flaky", workers=2, backoff_limit=1))
    for restarts in (0, 1):
        pods = eventually(lambda: len(cluster.pods("flaky")) == 2 and cluster.pods("flaky"))
        kubelet.set_phase(pods[0], "Failed", reason="Error")
        if restarts == 0:
            bad = pods[0].spec.node_name
            eventually(lambda: cluster.status("TrainingJob", "flaky").get("restarts") == 1)
            assert cluster.status("TrainingJob", "flaky")["avoidNodes"] == [bad]
            again = eventually(lambda: len(cluster.pods("flaky")) == 2 and cluster.pods("flaky"))
            assert bad not in {p.spec.node_name for p in again}, "the restart is placed away from the bad node"
    status = eventually(
        lambda: (
            cluster.status("TrainingJob", "flaky").get("phase") == "Failed" and cluster.status("TrainingJob", "flaky")
        )
    )
    assert cluster.condition("TrainingJob", "flaky", "Failed")["reason"] == "BackoffLimitExceeded"
    assert status["restarts"] == 1
    eventually(lambda: cluster.pods("flaky") == [])


def test_transient_api_errors_still_make_a_whole_gang(cluster, emulator, eventually):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("a-1", island="a")
    cluster.start()
    emulator.fail(method="POST", resource="pods", status=500, times=2)
    emulator.fail(method="POST", resource="pods", status=409, times=1)
    emulator.stall(method="POST", resource="pods", name="llm-worker-1", seconds=1.5, times=1)
    cluster.create(make_job("llm", workers=2))

    pods = eventually(lambda: len(cluster.pods("llm")) == 2 and cluster.pods("llm"), timeout=15)
    assert no_card_shared(pods)
    assert emulator.count("POST", "pods") >= 5, "the failures were retried"
    eventually(lambda: cluster.condition("TrainingJob", "llm")["reason"] == "Placed")


def test_a_gang_that_cannot_be_completed_is_rolled_back_and_retried(cluster, emulator, eventually):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("a-1", island="a")
    cluster.start()
    emulator.fail(method="POST", resource="pods", name="llm-worker-1", status=500, times=None)
    cluster.create(make_job("llm", workers=2))

    condition = eventually(
        lambda: (
            (cluster.condition("TrainingJob", "llm") or {}).get("reason") == "PodCreationFailed"
            and cluster.condition("TrainingJob", "llm")
        )
    )
    assert "llm-worker-1" in condition["message"]
    eventually(lambda: cluster.pods("llm", live=False) == [])  # no half gang is left behind
    emulator.faults.clear()
    eventually(lambda: len(cluster.pods("llm")) == 2)


def test_an_invalid_spec_is_rejected_with_the_field_named_while_other_jobs_run(cluster, eventually):
    import kubernetes

    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.start()
    bad = make_job("bad", workers=1)
    bad["spec"]["replicaSets"][0]["cards"] = {"count": 1, "milli": 1500}
    with pytest.raises(kubernetes.client.ApiException) as rejected:
        cluster.create(bad)
    assert rejected.value.status == 422 and "spec.replicaSets[0].cards.milli" in rejected.value.body

    cluster.create(make_job("typo", workers=1, priority_class="urgent"))
    cluster.create(make_job("unknown-model", workers=1, models=("H80",)))
    cluster.create(make_job("good", workers=1))

    eventually(lambda: len(cluster.pods("good")) == 1)
    typo = eventually(lambda: cluster.condition("TrainingJob", "typo"))
    assert typo["reason"] == "UnknownPriorityClass" and "spec.priorityClassName" in typo["message"]
    model = eventually(lambda: cluster.condition("TrainingJob", "unknown-model"))
    assert model["reason"] == "UnknownDeviceModel" and "spec.deviceModels[0]" in model["message"]
    assert cluster.status("TrainingJob", "typo")["phase"] == "Pending"


def test_inference_replicas_share_one_card_by_fraction(cluster, eventually):
    cluster.pool(fractional=True)
    cluster.node("a-0", island="a", cards=1)
    cluster.start()
    cluster.create(make_service("chat", replicas=4, milli=250, memory_mib=16384))

    pods = eventually(lambda: len(cluster.pods("chat")) == 4 and cluster.pods("chat"))
    assert [p.metadata.name for p in pods] == [f"chat-server-{i}" for i in range(4)]
    assert {p.metadata.annotations[labels.POD_CARDS] for p in pods} == {"0"}
    assert {p.metadata.annotations[labels.POD_MILLI] for p in pods} == {"250"}
    assert {env_of(p)["NVIDIA_VISIBLE_DEVICES"] for p in pods} == {"0"}
    cluster.create(make_service("more", replicas=1, milli=250))
    condition = eventually(lambda: cluster.condition("InferenceService", "more"))
    assert condition["status"] == "False", "the card is fully shared: a fifth quarter waits"


def test_suspend_and_delete_remove_the_pods(cluster, eventually):
    import archipelago.api as api_

    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.start()
    cluster.create(make_job("llm", workers=1))
    eventually(lambda: len(cluster.pods("llm")) == 1)

    cluster.custom.patch_namespaced_custom_object(
        api_.GROUP, api_.VERSION, NAMESPACE, "trainingjobs", "llm", {"spec": {"suspend": True}}
    )
    eventually(lambda: cluster.pods("llm", live=False) == [])
    eventually(lambda: cluster.status("TrainingJob", "llm")["phase"] == "Suspended")

    cluster.custom.patch_namespaced_custom_object(
        api_.GROUP, api_.VERSION, NAMESPACE, "trainingjobs", "llm", {"spec": {"suspend": False}}
    )
    eventually(lambda: len(cluster.pods("llm")) == 1)
    cluster.custom.delete_namespaced_custom_object(api_.GROUP, api_.VERSION, NAMESPACE, "trainingjobs", "llm")
    eventually(lambda: cluster.pods("llm", live=False) == [])


def test_explain_reads_the_reason_and_adds_a_hint(cluster, api_client, eventually):
    from archipelago import runner

    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("b-0", island="b")
    cluster.start()
    cluster.create(make_job("wide", workers=2, topology={"level": "archipelago.dev/island", "mode": "Required"}))
    eventually(lambda: cluster.condition("TrainingJob", "wide"))
    eventually(lambda: cluster.events("wide"))

    text = runner.explain("tj/wide", NAMESPACE, api_client)

    assert text.startswith("TrainingJob team-a/wide: Pending")
    assert "Scheduled=False TopologyTooSmall" in text and "hint: no domain of the required level" in text
    assert "Warning TopologyTooSmall" in text
    with pytest.raises(ValueError, match="use <kind>/<name>"):
        runner.explain("pods/x", NAMESPACE, api_client)


def test_a_settled_cluster_writes_nothing_and_reports_pool_status_and_metrics(cluster, emulator, eventually):
    import time

    from archipelago import metrics

    def sample(name: str, **labels_: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels_) or 0.0

    placed_before = sample("archipelago_gangs_placed_total")
    cycles_before = sample("archipelago_cycle_duration_seconds_count")
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("a-1", island="a")
    cluster.start()
    cluster.create(make_job("llm", workers=1))
    eventually(lambda: cluster.status("TrainingJob", "llm").get("phase") == "Running")

    pool = eventually(
        lambda: cluster.custom.get_cluster_custom_object("archipelago.dev", "v1alpha1", "acceleratorpools", "h800").get(
            "status"
        )
    )
    assert (pool["nodes"], pool["cards"]) == (2, 16)
    eventually(
        lambda: (
            cluster.custom.get_cluster_custom_object("archipelago.dev", "v1alpha1", "acceleratorpools", "h800")[
                "status"
            ]["allocatedMilliCards"]
            == 8000
        )
    )
    assert pool["models"][0]["model"] == "H800"
    assert sample("archipelago_gangs_placed_total") == placed_before + 1
    assert sample("archipelago_cards", pool="h800", model="H800") == 16
    # The gauges are set once the cycle's writes (this pool status among them) are done.
    eventually(lambda: sample("archipelago_allocated_cards", pool="h800", model="H800") == 8)
    assert sample("archipelago_cycle_duration_seconds_count") > cycles_before

    time.sleep(0.5)  # let the last status writes land
    writes = emulator.count("PATCH", "trainingjobs") + emulator.count("PATCH", "acceleratorpools")
    events = emulator.count("POST", "events")
    time.sleep(2.0)  # four resync periods
    assert emulator.count("PATCH", "trainingjobs") + emulator.count("PATCH", "acceleratorpools") == writes
    assert emulator.count("POST", "events") == events, "a settled cluster records no new Events"


def test_a_failed_inference_replica_is_replaced_alone(cluster, kubelet, emulator, eventually):
    cluster.pool(fractional=True)
    cluster.node("a-0", island="a", cards=1)
    cluster.start()
    cluster.create(make_service("chat", replicas=2, milli=500, memory_mib=8192))
    pods = eventually(lambda: len(cluster.pods("chat")) == 2 and cluster.pods("chat"))
    for p in pods:
        kubelet.set_phase(p, "Running", namespace=NAMESPACE)

    kubelet.set_phase("chat-server-1", "Failed", namespace=NAMESPACE)

    eventually(lambda: any(d.name == "chat-server-1" for d in emulator.deletions))
    again = eventually(lambda: len(cluster.pods("chat")) == 2 and cluster.pods("chat"))
    assert not any(d.name == "chat-server-0" for d in emulator.deletions), "the healthy replica keeps running"
    assert again[0].metadata.uid == pods[0].metadata.uid and again[1].metadata.uid != pods[1].metadata.uid
    assert cluster.status("InferenceService", "chat")["phase"] == "Running"


def test_without_any_pool_a_job_says_so_and_runs_once_a_pool_exists(cluster, eventually):
    cluster.node("a-0", island="a")
    cluster.start()
    cluster.create(make_job("early", workers=1))

    condition = eventually(lambda: cluster.condition("TrainingJob", "early"))
    assert (condition["status"], condition["reason"]) == ("False", "NoAcceleratorPool")
    cluster.pool()
    eventually(lambda: len(cluster.pods("early")) == 1)
    eventually(lambda: cluster.condition("TrainingJob", "early")["reason"] == "Placed")


def test_the_pods_watch_asks_the_api_server_for_managed_pods_only(cluster, emulator, eventually):
    """On a shared cluster most pods are not ours: they must not be streamed to the operator at all
    (a client-side filter still receives, parses and drops every pod of the cluster)."""
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.start()
    cluster.create(make_job("llm", workers=1))
    eventually(lambda: cluster.pods("llm"))
    watches = [c for c in emulator.calls if (c.method, c.path) == ("GET", "/api/v1/pods")]
    assert any(c.query.get("watch") for c in watches), "the operator lists and watches pods cluster-wide"
    assert all(c.query.get("labelSelector") == f"{labels.MANAGED_BY}={labels.MANAGER}" for c in watches), watches


def test_kopf_writes_a_workload_once_for_its_finalizer_and_keeps_no_diff_base_on_it(cluster, emulator, eventually):
    """No handler of ours reads kopf's diff-base (no on.create, on.update or on.resume): kopf's
    last-handled-configuration annotation would be one more write per workload, for nothing."""
    import time

    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.start()
    cluster.create(make_job("llm", workers=1))
    eventually(lambda: cluster.status("TrainingJob", "llm").get("phase") == "Running")
    time.sleep(0.5)  # kopf's handling of the last events

    writes = [c for c in emulator.calls if (c.method, c.resource, c.subresource) == ("PATCH", "trainingjobs", None)]
    assert len(writes) == 1, writes
    job = cluster.get("TrainingJob", "llm")
    assert job["metadata"]["finalizers"], "the deletion handler's finalizer"
    assert not any("last-handled-configuration" in key for key in job["metadata"].get("annotations") or {})


def test_a_throttled_service_creation_is_retried_so_the_gang_keeps_its_dns_names(cluster, emulator, eventually):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.start()
    emulator.fail(method="POST", resource="services", status=429, times=2)
    cluster.create(make_job("llm", workers=1))

    eventually(lambda: cluster.status("TrainingJob", "llm").get("phase") == "Running")
    assert cluster.core.read_namespaced_service("llm", NAMESPACE).spec.cluster_ip == "None"
    assert emulator.count("POST", "services", status=429) == 2
