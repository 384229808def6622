"""A restarted gang is placed away from the bad node: ``PodRequest.avoid_nodes`` end to end.

The lifecycle names the nodes of the failed pods and the lost nodes; the operator records them
in ``status.avoidNodes``; the job's gang carries them on every pod; every placer (greedy, the
CP-SAT model, the baselines) and the validator treat an avoided node as ineligible; a gang
that only an avoided node could hold says so.
"""

from __future__ import annotations

import dataclasses

import pytest

from archipelago import cycle, queueing, workload
from archipelago.api import resources
from archipelago.placement import baselines, greedy, model, objective, plan, pools, validate
from archipelago.queueing import training_gang
from tests.builders import make_cluster, make_ledger, make_node, make_nodes, occupy
from tests.gang_builders import make_allocations, make_gang, make_snapshot
from tests.test_lifecycle import job, verdict, workers
from tests.test_queueing import CATALOGUE
from tests.workload_builders import make_service, make_view


def avoiding(gang: workload.Gang, *names: str) -> workload.Gang:
    sets = tuple(
        dataclasses.replace(s, request=dataclasses.replace(s.request, avoid_nodes=names)) for s in gang.pod_sets
    )
    return dataclasses.replace(gang, pod_sets=sets)


def three_alike():
    """Three interchangeable 8-card nodes in one island: one pool, unless a node is avoided."""
    return make_ledger(make_cluster(*make_nodes(3, island="a")))


def nodes_of(ledger, allocations) -> set[str]:
    return {ledger.cluster.nodes[a.node].name for a in allocations}


def test_a_node_name_list_is_required():
    with pytest.raises(ValueError, match="avoid_nodes must be a list of node names"):
        workload.PodRequest("p", avoid_nodes="n0")  # type: ignore[arg-type]
    plain = workload.PodRequest("p", cards=1)
    assert dataclasses.replace(plain, avoid_nodes=["n0"]).fit_key != plain.fit_key


def test_an_avoided_node_forms_a_pool_of_its_own():
    ledger = three_alike()
    assert [p.nodes for p in pools.State(ledger.copy()).pools] == [[0, 1, 2]]
    split = pools.State(ledger.copy(), frozenset({"n1", "elsewhere"}))
    assert sorted(p.nodes for p in split.pools) == [[0, 2], [1]]
    gang = avoiding(make_gang(pods=2), "n1")
    assert pools.avoid_of([gang, make_gang(name="other")]) == {"n1"}
    assert [split.pools[k].nodes for k in split.gang_pools(gang)] == [[0, 2]]
    again = pools.State(ledger.copy(), frozenset({"n1"}))
    assert again._layout is split._layout, "the same avoid set reuses its layout"
    pools.State(ledger.copy(), frozenset({"n2"}))
    assert ledger.cluster.derived("placement.pools.isolated", dict).keys() == {frozenset({"n2"})}, "only the latest"


@pytest.mark.parametrize("avoid", ["n0", "n2"])
def test_greedy_places_the_gang_on_the_other_nodes(avoid):
    ledger = three_alike()
    gang = avoiding(make_gang(pods=2, topology="island-required"), avoid)
    state = pools.State(ledger.copy(), pools.avoid_of([gang]))
    placed = greedy.run(state, [gang])
    assert avoid not in nodes_of(ledger, placed["g"]) and len(nodes_of(ledger, placed["g"])) == 2


@pytest.mark.parametrize("avoid", ["n0", "n2"])
def test_the_solver_places_the_gang_on_the_other_nodes(avoid):
    ledger = three_alike()
    gang = avoiding(make_gang(pods=2, topology="island-required"), avoid)
    state = pools.State(ledger.copy(), pools.avoid_of([gang]))
    units = model.items(state, [gang], objective.tier_weights([gang]))
    solution = model.solve(state, units, {}, plan.Config(budget_s=1.0, seed=0), 1.0)
    placed = model.decode(state, units, solution)
    assert avoid not in nodes_of(ledger, placed["g"]) and len(nodes_of(ledger, placed["g"])) == 2


@pytest.mark.parametrize("placer", [baselines.first_fit, baselines.volcano_like, cycle.run])
def test_every_placer_keeps_off_the_avoided_node(placer):
    ledger = three_alike()
    gang = avoiding(make_gang(pods=2), "n0")
    result = placer(make_snapshot(ledger), [gang], plan.Config(budget_s=0.5, seed=0))
    assert nodes_of(ledger, result.placed["g"]) == {"n1", "n2"}
    validate.check(make_snapshot(ledger), [gang], result)


def test_the_validator_rejects_a_pod_on_an_avoided_node():
    ledger = three_alike()
    gang = make_gang(pods=1)
    bad = plan.Plan(placed={"g": make_allocations(ledger, gang, "n0")})
    assert validate.violations(make_snapshot(ledger), [gang], bad) == []
    gang = avoiding(gang, "n0")
    assert any("not eligible" in v for v in validate.violations(make_snapshot(ledger), [gang], bad))


def test_a_gang_only_the_avoided_node_could_hold_waits_and_says_so():
    ledger = make_ledger(make_cluster(make_node(name="n0"), make_node(name="n1", model="A100")))
    gang = avoiding(make_gang(pods=1), "n0")
    wait = cycle.run(make_snapshot(ledger), [gang], plan.Config(budget_s=0.5)).waiting["g"]
    assert wait.code is plan.ReasonCode.NO_MATCHING_NODES
    assert "n0 avoided after a restart" in wait.message


def test_with_the_other_nodes_busy_the_gang_waits_rather_than_return():
    ledger = three_alike()
    occupy(ledger, "n1", milli=dict.fromkeys(range(8), 1000))
    gang = avoiding(make_gang(pods=2), "n0")
    result = cycle.run(make_snapshot(ledger), [gang], plan.Config(budget_s=0.5))
    assert result.placed == {} and "g" in result.waiting


def test_a_restart_names_the_failed_pods_node_or_the_lost_node():
    failed = [make_view("llm-worker-0", phase="Failed", node="n3"), make_view("llm-worker-1", index=1, node="n4")]
    assert verdict(job(), failed).avoid == ("n3",)
    assert verdict(job(), workers(2, node="gone"), lost={"gone"}).avoid == ("gone",)
    assert verdict(job(), workers(2)).avoid == ()


def test_the_jobs_gang_avoids_the_nodes_its_status_names():
    gang = training_gang(job(status={"restarts": 1, "avoidNodes": ["n3"]}), CATALOGUE, queued_at=0.0)
    assert all(s.request.avoid_nodes == {"n3"} for s in gang.pod_sets)
    assert all(not s.request.avoid_nodes for s in training_gang(job(), CATALOGUE, queued_at=0.0).pod_sets)


def test_only_a_training_job_has_nodes_to_avoid():
    job_status = resources.TRAINING_JOB.status.model_validate({"restarts": 1, "avoidNodes": ["n3"]})
    assert job_status.avoid_nodes == ["n3"]
    service_schema = resources.INFERENCE_SERVICE.status.model_json_schema(by_alias=True)
    assert "avoidNodes" not in service_schema["properties"] and "restarts" in service_schema["properties"]
    # An InferenceService never restarts as a gang: a status naming nodes to avoid is not its own.
    service = make_service()
    service["status"] = {"restarts": 2, "avoidNodes": ["n3"]}
    assert queueing.read(resources.INFERENCE_SERVICE, service).status.restarts == 0
    service["status"] = {"restarts": 2}
    assert queueing.read(resources.INFERENCE_SERVICE, service).status.restarts == 2
