"""A workload's fate from its pods: run, finish, restart the whole gang, fail, drain, suspend."""

from archipelago import lifecycle, queueing
from archipelago.api import common, resources
from tests.workload_builders import make_job, make_service, make_view

State = lifecycle.State


def job(**kwargs):
    return queueing.read(resources.TRAINING_JOB, make_job(**kwargs))


def workers(n, *, phase="Running", node="node-0", **kwargs):
    return [make_view(f"llm-worker-{i}", index=i, phase=phase, node=node, **kwargs) for i in range(n)]


def verdict(w, pods, lost=(), min_member=None):
    size = sum(r.replicas for r in w.spec.replica_sets)
    return lifecycle.training(w.spec, w.status, pods, set(lost), min_member or size)


def test_a_job_without_pods_is_queued():
    assert verdict(job(), []).state is State.QUEUED


def test_a_whole_gang_runs():
    v = verdict(job(), workers(2))
    assert (v.state, v.phase, v.delete) == (State.RUNNING, common.Phase.RUNNING, ())


def test_the_job_succeeds_when_every_worker_succeeds():
    v = verdict(job(), workers(2, phase="Succeeded"))
    assert (v.state, v.phase) == (State.DONE, common.Phase.SUCCEEDED)


def test_with_a_launcher_its_success_ends_the_job_and_removes_running_workers():
    w = job(launcher=True)
    pods = [make_view("llm-launcher-0", role="launcher", phase="Succeeded"), *workers(2)]
    v = verdict(w, pods)
    assert v.phase is common.Phase.SUCCEEDED
    assert set(v.delete) == {"llm-worker-0", "llm-worker-1"}


def test_a_failed_pod_restarts_the_whole_gang_and_counts_a_restart():
    pods = [make_view("llm-worker-0", phase="Failed"), make_view("llm-worker-1", index=1)]
    v = verdict(job(), pods)
    assert v.state is State.DRAINING and v.restart
    assert set(v.delete) == {"llm-worker-0", "llm-worker-1"}, "finished pods go too: the next attempt reuses names"
    assert v.condition[2] == "PodFailed"


def test_a_lost_node_restarts_the_gang():
    v = verdict(job(), workers(2, node="gone"), lost={"gone"})
    assert v.restart and v.condition[2] == "NodeLost" and "gone" in v.condition[3]


def test_restarts_beyond_the_backoff_limit_fail_the_job():
    w = job(backoff_limit=1, status={"restarts": 1})
    v = verdict(w, [make_view("llm-worker-0", phase="Failed"), make_view("llm-worker-1", index=1)])
    assert (v.state, v.phase) == (State.DONE, common.Phase.FAILED)
    assert v.condition[2] == "BackoffLimitExceeded" and v.delete == ("llm-worker-1",)


def test_a_half_gang_is_removed_without_counting_a_restart():
    v = verdict(job(workers=4), workers(3))
    assert v.state is State.DRAINING and not v.restart
    assert v.condition[2] == "GangIncomplete" and len(v.delete) == 3


def test_an_elastic_gang_above_min_member_keeps_running():
    assert verdict(job(workers=4, min_member=2), workers(3), min_member=2).state is State.RUNNING


def test_an_elastic_gang_shrinking_by_preemption_keeps_running():
    pods = [*workers(2), make_view("llm-worker-2", index=2, deleting=True)]
    assert verdict(job(workers=3, min_member=2), pods, min_member=2).state is State.RUNNING


def test_a_preempted_gang_drains_then_queues():
    assert verdict(job(), workers(2, deleting=True)).state is State.DRAINING


def test_suspend_removes_the_pods_and_keeps_the_job():
    v = verdict(job(suspend=True), workers(2))
    assert (v.state, v.phase) == (State.DONE, common.Phase.SUSPENDED)
    assert len(v.delete) == 2


def test_a_finished_job_never_queues_again():
    w = job(status={"phase": "Succeeded"})
    assert verdict(w, []).state is State.DONE


def service(**kwargs):
    return queueing.read(resources.INFERENCE_SERVICE, make_service(**kwargs)).spec


def replica(i, **kwargs):
    return make_view(f"chat-server-{i}", role="server", index=i, **kwargs)


def test_inference_places_only_missing_replicas():
    v = lifecycle.inference(service(replicas=3), [replica(0), replica(2)], set())
    assert v.missing == (1,) and v.state is State.RUNNING and v.phase is common.Phase.RUNNING


def test_inference_replaces_a_failed_replica_alone():
    v = lifecycle.inference(service(replicas=2), [replica(0, phase="Failed"), replica(1)], set())
    assert v.delete == ("chat-server-0",) and v.missing == (), "placed again once the old pod is gone"
    assert lifecycle.inference(service(replicas=2), [replica(1)], set()).missing == (0,)


def test_inference_scale_down_removes_the_highest_replicas():
    v = lifecycle.inference(service(replicas=1), [replica(0), replica(1), replica(2)], set())
    assert set(v.delete) == {"chat-server-1", "chat-server-2"} and v.missing == ()
