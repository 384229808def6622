"""From workload objects to gangs, and the errors that name the field to fix."""

import pytest

from archipelago import queueing, workload
from archipelago.api import resources
from tests.workload_builders import make_job, make_service

H800_POOL = resources.AcceleratorPoolSpec(kind="GPU", resource_name="nvidia.com/gpu", fractional=True)
CATALOGUE = queueing.Catalogue(
    priorities={"high": 1000, "low": 10},
    pools={"gpu": H800_POOL},
    models={"gpu": frozenset({"H800"})},
)


def gang_of(body, catalogue=CATALOGUE):
    w = queueing.read(resources.TRAINING_JOB, body)
    return queueing.training_gang(w, catalogue, queued_at=5.0)


def spec_error(body, catalogue=CATALOGUE, kind=resources.TRAINING_JOB):
    with pytest.raises(queueing.SpecError) as e:
        w = queueing.read(kind, body)
        if kind is resources.TRAINING_JOB:
            queueing.training_gang(w, catalogue, queued_at=0.0)
        else:
            queueing.inference_gangs(w, catalogue, [0], queued_at=0.0)
    return e.value


def test_a_job_becomes_one_gang_with_its_roles_named_for_the_pods():
    gang = gang_of(make_job(launcher=True, workers=2, priority_class="high", models=("H800",)))
    assert gang.name == "team-a/llm" and gang.priority == 1000 and gang.queued_at == 5.0
    assert [p.name for p in gang.pods()] == ["team-a/llm-launcher-0", "team-a/llm-worker-0", "team-a/llm-worker-1"]
    worker = gang.pod_sets[1].request
    assert (worker.cards, worker.milli_per_card, worker.cpu_milli, worker.memory_mib) == (8, 1000, 4000, 16384)
    assert worker.models == {"H800"} and gang.pod_sets[0].request.cards == 0


def test_topology_and_min_member_reach_the_gang():
    gang = gang_of(make_job(workers=4, min_member=2, topology={"level": "archipelago.dev/island", "mode": "Required"}))
    assert gang.min_member == 2
    assert gang.topology == workload.TopologyRequest("archipelago.dev/island", workload.TopologyMode.REQUIRED)


def test_init_containers_count_by_their_peak_as_kubernetes_does():
    body = make_job()
    spec = body["spec"]["replicaSets"][0]["template"]["spec"]
    spec["initContainers"] = [{"name": "fetch", "image": "busybox", "resources": {"requests": {"cpu": "16"}}}]
    assert gang_of(body).pod_sets[0].request.cpu_milli == 16000


def test_each_inference_replica_is_its_own_gang_keeping_its_index():
    w = queueing.read(resources.INFERENCE_SERVICE, make_service(replicas=3))
    gangs = queueing.inference_gangs(w, CATALOGUE, [0, 2], queued_at=0.0)
    assert [g.name for g in gangs] == ["team-a/chat/0", "team-a/chat/2"]
    assert [g.pods()[0].name for g in gangs] == ["team-a/chat-server-0", "team-a/chat-server-2"]
    assert gangs[0].pods()[0].milli_per_card == 250 and gangs[0].pods()[0].device_memory_mib == 16384


def test_a_fraction_above_one_card_names_the_field():
    body = make_job()
    body["spec"]["replicaSets"][0]["cards"] = {"count": 1, "milli": 1500}
    e = spec_error(body)
    assert e.field == "spec.replicaSets[0].cards.milli" and e.permanent and e.reason == "InvalidSpec"


def test_a_negative_count_names_the_field():
    body = make_job()
    body["spec"]["replicaSets"][0]["replicas"] = -1
    assert spec_error(body).field == "spec.replicaSets[0].replicas"


def test_an_unknown_priority_class_keeps_the_job_pending_and_lists_the_known_ones():
    e = spec_error(make_job(priority_class="urgent"))
    assert e.field == "spec.priorityClassName" and not e.permanent
    assert "high" in str(e) and e.reason == "UnknownPriorityClass"


def test_an_unknown_device_model_names_its_position():
    e = spec_error(make_job(models=("H800", "H80")))
    assert e.field == "spec.deviceModels[1]" and "H800" in str(e) and e.reason == "UnknownDeviceModel"


def test_an_unknown_topology_level_lists_the_levels():
    e = spec_error(make_job(topology={"level": "rack", "mode": "Required"}))
    assert e.field == "spec.topology.level" and "archipelago.dev/island" in str(e)


def test_a_fraction_needs_a_pool_that_allows_sharing():
    whole_only = queueing.Catalogue(
        pools={"gpu": H800_POOL.model_copy(update={"fractional": False})}, models={"gpu": frozenset({"H800"})}
    )
    e = spec_error(make_service(), whole_only, kind=resources.INFERENCE_SERVICE)
    assert e.field == "spec.cards.milli" and e.reason == "FractionalNotAllowed"


def test_a_bad_quantity_names_the_container():
    body = make_job()
    body["spec"]["replicaSets"][0]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
    assert spec_error(body).field == "spec.replicaSets[0].template.spec.containers[0].resources.requests"


def test_the_global_default_priority_applies_without_a_class():
    catalogue = queueing.Catalogue(default_priority=7, pools=CATALOGUE.pools, models=CATALOGUE.models)
    assert gang_of(make_job(), catalogue).priority == 7


def test_an_allowed_model_no_pool_holds_yet_is_not_an_error():
    gang = gang_of(make_job(models=("H800", "A100-SXM4-80GB")))
    assert gang.pod_sets[0].request.models == {"H800", "A100-SXM4-80GB"}


@pytest.mark.parametrize(
    ("kind", "make"), [(resources.TRAINING_JOB, make_job), (resources.INFERENCE_SERVICE, make_service)]
)
def test_a_name_too_long_for_the_pods_made_before_the_crd_refused_it_is_a_permanent_spec_error(kind, make):
    limit = kind.name_limit.length
    assert queueing.read(kind, make("n" * limit)).name == "n" * limit
    with pytest.raises(queueing.SpecError) as e:
        queueing.read(kind, make("n" * (limit + 1)))
    assert e.value.field == "metadata.name" and e.value.permanent and f"at most {limit} characters" in str(e.value)
