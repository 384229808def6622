"""The operator's contract on a real control plane: kube-apiserver, etcd, the garbage collector, KWOK nodes.

The operator is the real ``archipelago run`` process, authenticated as the chart's ServiceAccount
with the chart's RBAC: a verb the chart does not grant fails here. kwok moves bound pods to
Running and deletes terminating ones when their grace period allows.
"""

from __future__ import annotations

from archipelago.api import labels
from tests.controlplane.kube import Cluster, eventually
from tests.workload_builders import make_job, make_service

ISLAND = {"level": "archipelago.dev/island", "mode": "Required"}


def cards_of(pod) -> set[int]:
    text = pod.metadata.annotations[labels.POD_CARDS]
    return {int(c) for c in text.split(",")} if text else set()


def no_card_shared(pods) -> bool:
    seen: set[tuple[str, int]] = set()
    for p in pods:
        for card in cards_of(p):
            if (p.spec.node_name, card) in seen:
                return False
            seen.add((p.spec.node_name, card))
    return True


def test_a_gang_runs_inside_one_island(cluster: Cluster, operator):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("b-0", island="b")
    cluster.node("b-1", island="b")
    cluster.ready()
    operator()
    cluster.create(make_job("llm", workers=2, cards=8, topology=ISLAND))

    pods = cluster.running("llm", 2)
    assert {cluster.island_of(p.spec.node_name) for p in pods} == {"b"}
    assert all(cards_of(p) == set(range(8)) for p in pods)
    assert pods[0].metadata.owner_references[0].kind == "TrainingJob"
    status = eventually(lambda: (s := cluster.status("TrainingJob", "llm")).get("phase") == "Running" and s)
    assert status["placement"]["cards"] == 16
    assert cluster.condition("TrainingJob", "llm")["reason"] == "Placed"
    eventually(lambda: any(e.reason == "Placed" for e in cluster.events("llm")), what="a Placed Event")


def test_a_gang_too_big_for_any_island_waits_and_says_why(cluster: Cluster, operator):
    cluster.pool()
    for name in ("a-0", "a-1", "b-0", "b-1"):
        cluster.node(name, island=name[0])
    operator()
    cluster.create(make_job("huge", workers=3, cards=8, topology=ISLAND))

    condition = eventually(lambda: cluster.condition("TrainingJob", "huge"))
    assert (condition["status"], condition["reason"]) == ("False", "TopologyTooSmall")
    assert "24" in condition["message"] and "16" in condition["message"], condition["message"]
    assert cluster.status("TrainingJob", "huge")["phase"] == "Pending"
    eventually(lambda: any(e.reason == "TopologyTooSmall" and e.type == "Warning" for e in cluster.events("huge")))
    assert cluster.pods("huge") == []


def test_inference_replicas_share_one_card_by_fraction(cluster: Cluster, operator):
    cluster.pool(fractional=True)
    cluster.node("a-0", island="a", cards=1)
    operator()
    cluster.create(make_service("chat", replicas=3, milli=250, memory_mib=16384))

    pods = cluster.running("chat", 3)
    assert {p.spec.node_name for p in pods} == {cluster.nodes[0]}
    assert all(cards_of(p) == {0} for p in pods)
    assert eventually(lambda: cluster.status("InferenceService", "chat").get("phase") == "Running")


def test_a_higher_priority_gang_preempts_a_lower_one_with_its_grace_period(cluster: Cluster, operator):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("a-1", island="a")
    low = cluster.priority_class("low", 10)
    high = cluster.priority_class("high", 1000)
    operator()
    cluster.create(make_job("tune", workers=2, priority_class=low, preemptible=True, grace=4))
    victims = cluster.running("tune", 2)
    assert victims[0].spec.termination_grace_period_seconds == 4

    terminating = cluster.record_terminating()

    cluster.create(make_job("train", workers=2, priority_class=high))

    cluster.running("train", 2)
    graces = {name: pod.metadata.deletion_grace_period_seconds for name, pod in terminating.items()}
    assert graces == {"tune-worker-0": 4, "tune-worker-1": 4}
    preempted = eventually(lambda: cluster.condition("TrainingJob", "tune", "Preempted"))
    assert preempted["status"] == "True" and f"{cluster.namespace}/train" in preempted["message"]
    status = eventually(lambda: (s := cluster.status("TrainingJob", "tune")).get("preemptions") == 1 and s)
    assert status["phase"] == "Pending"
    # Its pods hold their cards through their grace; once they are gone the placement must go, and
    # only an explicit null in the merge patch removes it.
    eventually(lambda: "placement" not in cluster.status("TrainingJob", "tune"), 30)
    assert no_card_shared(cluster.pods())


def test_suspend_removes_the_pods_and_resume_places_them_again(cluster: Cluster, operator):
    cluster.pool()
    cluster.node("a-0", island="a")
    operator()
    cluster.create(make_job("pause", workers=1, cards=4, grace=1))
    cluster.running("pause", 1)

    cluster.patch("TrainingJob", "pause", {"spec": {"suspend": True}})
    eventually(lambda: cluster.pods("pause", live=False) == [], what="the suspended job's pods gone")
    assert eventually(lambda: cluster.status("TrainingJob", "pause").get("phase") == "Suspended")

    cluster.patch("TrainingJob", "pause", {"spec": {"suspend": False}})
    cluster.running("pause", 1)


def test_deleting_a_job_removes_its_pods_and_service(cluster: Cluster, operator):
    cluster.pool()
    cluster.node("a-0", island="a")
    operator()
    cluster.create(make_job("gone", workers=2, cards=4, grace=1))
    cluster.running("gone", 2)
    assert cluster.core.read_namespaced_service("gone", cluster.namespace)

    cluster.delete("TrainingJob", "gone")

    eventually(lambda: cluster.pods("gone", live=False) == [], what="the pods gone")
    eventually(
        lambda: (
            not [s for s in cluster.core.list_namespaced_service(cluster.namespace).items if s.metadata.name == "gone"]
        ),
        what="the garbage collector deleting the Service the job owned",
    )


def test_an_operator_restart_mid_placement_leaves_no_duplicates(cluster: Cluster, operator):
    cluster.pool()
    for i in range(4):
        cluster.node(f"a-{i}", island="a")
    first = operator()
    for i in range(4):
        cluster.create(make_job(f"j{i}", workers=2, cards=4, topology=ISLAND))
    eventually(lambda: cluster.pods(), what="some pods made")
    first.stop(kill=True)
    operator()

    for i in range(4):
        cluster.running(f"j{i}", 2)
    pods = cluster.pods()
    assert len(pods) == 8 and no_card_shared(pods)


def test_a_node_lost_for_good_restarts_the_gang_elsewhere(cluster: Cluster, operator):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("a-1", island="a")
    cluster.ready()
    operator()
    cluster.create(make_job("move", workers=1, cards=8))
    (pod,) = cluster.running("move", 1)

    cluster.core.delete_node(pod.spec.node_name)

    (moved,) = eventually(
        lambda: (pods := cluster.running("move", 1)) and pods[0].spec.node_name != pod.spec.node_name and pods
    )
    assert eventually(lambda: cluster.status("TrainingJob", "move").get("restarts") == 1)


def test_a_node_not_ready_for_seconds_keeps_its_gang_and_one_lost_past_the_grace_restarts_it(
    cluster: Cluster, operator
):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("a-1", island="a")
    cluster.node("a-2", island="a")
    cluster.ready()
    operator("--node-lost-after", "12")
    cluster.create(make_job("stay", workers=1, cards=8))
    (pod,) = cluster.running("stay", 1)
    flaky = pod.spec.node_name

    cluster.stop_node(flaky)
    cluster.create(make_job("newcomer", workers=1, cards=8))
    (newcomer,) = cluster.running("newcomer", 1)
    assert newcomer.spec.node_name != flaky, "a node that is not Ready takes no new pods"
    assert [p.metadata.uid for p in cluster.pods("stay")] == [pod.metadata.uid], "nor loses its pods at once"
    assert cluster.status("TrainingJob", "stay").get("restarts", 0) == 0

    assert eventually(
        lambda: cluster.status("TrainingJob", "stay").get("restarts") == 1, what="a restart past the grace"
    )
    cluster.restart_node(flaky)  # its kubelet returns and lets the old pod go
    (moved,) = eventually(lambda: (p := cluster.running("stay", 1)) and p[0].metadata.uid != pod.metadata.uid and p)
    assert moved.spec.node_name != flaky, "the restarted gang avoids the node it lost"


def test_a_gang_over_the_namespace_resource_quota_waits_saying_so_and_runs_once_it_fits(cluster: Cluster, operator):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("a-1", island="a")
    cluster.quota(pods=1)
    operator()
    terminating = cluster.record_terminating()
    cluster.create(make_job("llm", workers=2, cards=8))

    condition = eventually(
        lambda: (c := cluster.condition("TrainingJob", "llm")) and c["reason"] == "ResourceQuotaExceeded" and c
    )
    assert "exceeded quota" in condition["message"], condition["message"]
    assert cluster.status("TrainingJob", "llm")["phase"] == "Pending", "a quota frees up: the job is not Failed"
    # The half-made gang is rolled back with the pod's own grace, never a forced (grace 0) deletion
    # that frees the object while a kubelet may still run the container.
    eventually(lambda: terminating, what="the half-made gang rolled back")
    graces = {name: pod.metadata.deletion_grace_period_seconds for name, pod in terminating.items()}
    assert 0 not in graces.values(), graces

    cluster.quota(pods=2)
    pods = cluster.running("llm", 2)
    assert no_card_shared(pods)
    assert eventually(lambda: cluster.condition("TrainingJob", "llm")["reason"] == "Placed")


def evicted(pod) -> bool:
    """The API server marks a pod removed through the Eviction API (not a plain deletion) so."""
    return any(
        c.type == "DisruptionTarget" and c.reason == "EvictionByEvictionAPI" for c in pod.status.conditions or ()
    )


def test_a_preemption_a_disruption_budget_forbids_waits_saying_so_and_goes_through_eviction_once_allowed(
    cluster: Cluster, operator
):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("a-1", island="a")
    low = cluster.priority_class("low", 10)
    high = cluster.priority_class("high", 1000)
    operator()
    cluster.create(make_job("tune", workers=2, priority_class=low, preemptible=True, grace=6))
    cluster.running("tune", 2)
    cluster.disruption_budget("tune", min_available=2)
    terminating = cluster.record_terminating()

    cluster.create(make_job("train", workers=2, priority_class=high))

    waiting = eventually(
        lambda: (c := cluster.condition("TrainingJob", "train")) and c["reason"] == "DisruptionBudget" and c
    )
    assert "PodDisruptionBudget tune allows 0 disruptions" in waiting["message"], waiting
    assert len(cluster.running("tune", 2)) == 2 and not cluster.condition("TrainingJob", "tune", "Preempted")
    assert any(e.reason == "DisruptionBudget" for e in cluster.events("train"))

    cluster.disruption_budget("tune", min_available=0)

    cluster.running("train", 2)
    assert sorted(terminating) == ["tune-worker-0", "tune-worker-1"]
    assert all(evicted(pod) for pod in terminating.values()), "removed through the Eviction API"
    assert eventually(lambda: cluster.status("TrainingJob", "tune").get("preemptions") == 1)


def test_a_restart_a_disruption_budget_forbids_waits_uncounted_and_runs_once_the_budget_goes(
    cluster: Cluster, operator
):
    cluster.pool()
    cluster.node("a-0", island="a")
    cluster.node("a-1", island="a")
    cluster.node("a-2", island="a")  # the restart avoids the failed pod's node
    operator()
    cluster.create(make_job("llm", workers=2))
    cluster.running("llm", 2)
    cluster.disruption_budget("llm", min_available=2)

    cluster.fail_pod("llm-worker-0")

    waiting = eventually(
        lambda: (c := cluster.condition("TrainingJob", "llm")) and c["reason"] == "DisruptionBudget" and c
    )
    assert "the gang cannot restart: PodDisruptionBudget llm" in waiting["message"], waiting
    assert not cluster.status("TrainingJob", "llm").get("restarts"), "a restart that waits is not counted"

    cluster.policy.delete_namespaced_pod_disruption_budget("llm", cluster.namespace)

    eventually(lambda: cluster.status("TrainingJob", "llm").get("restarts") == 1)
    eventually(
        lambda: len(cluster.running("llm", 2)) == 2 and cluster.status("TrainingJob", "llm")["phase"] == "Running"
    )
