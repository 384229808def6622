"""Every policy places only where a pod fits, finds a place whenever one exists, and keeps its
score cache coherent with the ledger. Checked against brute force, not the policies' helpers."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from archipelago import policies, workload
from archipelago.cluster import ledger as ledger_
from archipelago.cluster import nodes
from archipelago.policies import scoring
from tests.builders import make_cluster, make_ledger, make_node, make_pod, make_policy, make_task
from tests.test_policies import readme_fgd_score, readme_fragmentation

GIB = 1024
NO_SCHEDULE = nodes.Taint(key="dedicated", value="infer", effect="NoSchedule")
TOLERATE_ALL = nodes.Toleration(operator="Exists")


def fitting_nodes(ledger: ledger_.Ledger, pod: workload.PodRequest) -> list[int]:
    """Brute force: nodes that pass the static rules and where some set of cards passes ``check``."""
    found = []
    for i, node in enumerate(ledger.cluster.nodes):
        if not nodes.selected(node.labels, pod.node_selector) or not nodes.tolerated(node.taints, pod.tolerations):
            continue
        if pod.cards and (
            not node.devices
            or (pod.models and node.model not in pod.models)
            or (pod.resource is not None and node.devices[0].resource != pod.resource)
        ):
            continue
        for cards in itertools.combinations(range(node.card_count), pod.cards):
            try:
                ledger.check(scoring.allocation(pod, scoring.Placement(i, cards, 0)))
            except ledger_.CapacityError:
                continue
            found.append(i)
            break
    return found


def place_and_allocate(policy: scoring.Policy, pod: workload.PodRequest) -> scoring.Placement | None:
    """The policy's placement, checked against brute force and then recorded in the ledger."""
    fitting = fitting_nodes(policy.ledger, pod)
    placement = policy.place(pod)
    if placement is None:
        assert fitting == [], f"{policy.name} found no place for {pod}, but nodes {fitting} fit"
        return None
    assert placement.node in fitting
    assert len(set(placement.cards)) == len(placement.cards) == pod.cards
    policy.ledger.allocate(scoring.allocation(pod, placement))  # raises if it over-commits
    return placement


# --- every policy respects every constraint ----------------------------------------------

# Each case: a node the pod must not use (listed first, so ties would favour it), a node it
# may use, and the pod.
CONSTRAINTS = {
    "models": (make_node(model="A10"), make_node(model="H800"), make_pod(cards=1, models={"H800"})),
    "resource": (
        make_node(model="H800"),
        make_node(model="Ascend910"),
        make_pod(cards=1, resource="huawei.com/Ascend910"),
    ),
    "node-selector": (
        make_node(),
        make_node(labels={"pool": "train"}),
        make_pod(cards=1, node_selector={"pool": "train"}),
    ),
    "no-schedule-taint": (make_node(taints=[NO_SCHEDULE]), make_node(), make_pod(cards=1)),
    "no-execute-taint": (
        make_node(taints=[nodes.Taint(key="x", effect="NoExecute")]),
        make_node(),
        make_pod(cards=0, cpu_milli=1000),
    ),
    "cpu": (make_node(cpu_milli=999), make_node(), make_pod(cards=1, cpu_milli=1000)),
    "memory": (make_node(memory_mib=1023), make_node(), make_pod(cards=1, memory_mib=1024)),
    "device-memory": (
        make_node(model="T4"),  # 16 GiB cards
        make_node(model="A10"),  # 24 GiB cards
        make_pod(cards=1, milli=500, device_memory_mib=20 * GIB),
    ),
    "device-memory-unknown": (make_node(model="G2"), make_node(model="A10"), make_pod(cards=1, device_memory_mib=1)),
    "cards-on-one-node": (make_node(cards=4), make_node(cards=8), make_pod(cards=6)),
    "unhealthy-card": (make_node(cards=2, unhealthy=[1]), make_node(cards=2), make_pod(cards=2)),
    "cardless-node": (make_node(cards=0), make_node(cards=1), make_pod(cards=1, milli=100)),
}


@pytest.mark.parametrize("name", policies.NAMES)
@pytest.mark.parametrize("case", CONSTRAINTS.values(), ids=CONSTRAINTS.keys())
def test_policy_never_places_a_pod_where_a_constraint_forbids(name, case):
    forbidden, allowed, pod = case
    alone = make_ledger(make_cluster(forbidden))
    assert make_policy(name, alone).place(pod) is None
    both = make_ledger(make_cluster(forbidden, dataclasses.replace(allowed, name="ok")))
    assert place_and_allocate(make_policy(name, both), pod).node == 1


@pytest.mark.parametrize("name", policies.NAMES)
def test_policy_never_splits_a_multi_card_pod_across_nodes(name):
    ledger = make_ledger(make_cluster(make_node(name="a", cards=4), make_node(name="b", cards=4)))
    policy = make_policy(name, ledger)
    assert policy.place(make_pod(name="six", cards=6)) is None
    place_and_allocate(policy, make_pod(name="one", cards=1))
    assert policy.place(make_pod(name="four", cards=4)).node == 1  # 3 + 4 free, one node has 4


@pytest.mark.parametrize("name", policies.NAMES)
def test_policy_places_a_tolerating_pod_on_a_tainted_node(name):
    ledger = make_ledger(make_cluster(make_node(taints=[NO_SCHEDULE])))
    pod = make_pod(cards=1, tolerations=[nodes.Toleration(key="dedicated", value="infer")])
    assert place_and_allocate(make_policy(name, ledger), pod).node == 0
    assert make_policy(name, ledger).place(make_pod(name="other", cards=1)) is None


# --- random clusters and pod sequences ---------------------------------------------------

MODELS = ["H800", "A10", "G2", "Ascend910"]
PROFILE = (
    make_task(cards=1, weight=0.5),
    make_task(cards=1, milli=500, cpu_milli=4_000, weight=0.25),
    make_task(cards=2, models={"H800"}, weight=0.125),
    make_task(cards=0, cpu_milli=8_000, weight=0.125),
)


@st.composite
def clusters(draw):
    count = draw(st.integers(1, 4))
    node_list = []
    for i in range(count):
        cards = draw(st.integers(0, 8))
        node_list.append(
            make_node(
                name=f"n{i}",
                cards=cards,
                model=draw(st.sampled_from(MODELS)),
                cpu_milli=draw(st.sampled_from([8_000, 16_000, 64_000])),
                memory_mib=draw(st.sampled_from([8 * GIB, 64 * GIB])),
                labels=draw(st.sampled_from([{}, {}, {"pool": "a"}])),
                taints=draw(st.sampled_from([(), (), (), (NO_SCHEDULE,)])),
                unhealthy=draw(st.sets(st.integers(0, max(cards - 1, 0)), max_size=2)) if cards else (),
            )
        )
    return make_cluster(*node_list)


@st.composite
def pods(draw, name: str):
    cards = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
    shares = [100, 250, 500, 700, 1000] if cards == 1 else [1000, 1000, 600]
    milli = draw(st.sampled_from(shares))
    return make_pod(
        name=name,
        cards=cards,
        milli=milli if cards else None,
        cpu_milli=draw(st.sampled_from([0, 1_000, 4_000, 12_000])),
        memory_mib=draw(st.sampled_from([0, GIB, 16 * GIB])),
        device_memory_mib=draw(st.sampled_from([0, 0, 0, 8 * GIB, 40 * GIB])) if cards else 0,
        models=draw(st.sampled_from([(), (), (), ("H800",), ("A10", "G2")])),
        resource=draw(st.sampled_from([None, None, None, None, "huawei.com/Ascend910"])),
        node_selector=draw(st.sampled_from([{}, {}, {}, {"pool": "a"}])),
        tolerations=draw(st.sampled_from([(), (), (TOLERATE_ALL,)])),
    )


@st.composite
def workloads(draw):
    """Pods to place, with some releases of earlier pods (None: release a random held pod)."""
    steps = []
    for k in range(draw(st.integers(1, 14))):
        steps.append(draw(pods(f"p{k}")))
        if draw(st.integers(0, 4)) == 0:
            steps.append(draw(st.integers(0, 99)))
    return steps


def run_steps(policy: scoring.Policy, steps) -> None:
    for step in steps:
        if isinstance(step, int):
            held = sorted(a.pod for a in policy.ledger.allocations())
            if held:
                policy.ledger.release(held[step % len(held)])
        else:
            place_and_allocate(policy, step)


@pytest.mark.parametrize("name", policies.NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(), steps=workloads(), seed=st.integers(0, 3))
def test_policy_places_feasibly_and_fails_only_when_no_node_fits(name, cluster, steps, seed):
    run_steps(make_policy(name, make_ledger(cluster), profile=PROFILE, seed=seed), steps)


# --- FGD matches the README's formula ----------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(cluster=clusters(), steps=workloads(), pod=pods("probe"))
def test_fgd_score_is_the_readme_formula_over_the_best_card_choice(cluster, steps, pod):
    ledger = make_ledger(cluster)
    run_steps(make_policy("bestfit", ledger), steps)  # any policy, to reach a varied state
    fgd = make_policy("fgd", ledger, profile=PROFILE)
    for i, node in enumerate(cluster.nodes):
        evaluation = fgd.evaluate(i, pod)
        if i not in fitting_nodes(ledger, pod):
            assert evaluation is None
            continue
        free, cpu = ledger.card_free[i], ledger.cpu_free[i]
        before = readme_fragmentation(PROFILE, node.model, cpu, free)

        def after(cards, free=free, model=node.model, cpu=cpu):
            trial = [f - pod.milli_per_card if j in cards else f for j, f in enumerate(free)]
            return readme_fragmentation(PROFILE, model, cpu - pod.cpu_milli, trial)

        usable = [
            j
            for j in range(node.card_count)
            if free[j] >= pod.milli_per_card and ledger.card_memory_free[i][j] >= pod.device_memory_mib
        ]
        if pod.sharing:
            best = min(usable, key=lambda j: (after({j}), j))  # least F, then lowest index
            expected = (readme_fgd_score(before, after({best})), (best,))
        else:
            chosen = tuple(usable[: pod.cards])
            expected = (readme_fgd_score(before, after(set(chosen))), chosen)
        assert evaluation == expected


# --- the score cache follows the ledger --------------------------------------------------

PROBES = [
    make_pod(name="whole", cards=1),
    make_pod(name="share", cards=1, milli=300, cpu_milli=4_000),
    make_pod(name="pair", cards=2, models={"H800", "A10"}),
    make_pod(name="cpu", cards=0, cpu_milli=8_000),
    make_pod(name="mem", cards=1, milli=500, device_memory_mib=20 * GIB),
]
CACHE_CLUSTER = make_cluster(
    make_node(name="h", cards=4, model="H800", cpu_milli=32_000),
    make_node(name="a", cards=2, model="A10", cpu_milli=16_000),
    make_node(name="g", cards=3, model="G2", cpu_milli=16_000, unhealthy=[2]),
    make_node(name="c", cards=0, cpu_milli=16_000),
)

allocations = st.tuples(
    st.integers(0, len(CACHE_CLUSTER) - 1),
    st.integers(0, 12_000),
    st.lists(st.tuples(st.integers(0, 3), st.integers(1, 1000), st.sampled_from([0, 16 * GIB])), max_size=3),
)


@pytest.mark.parametrize("name", policies.NAMES)
@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.one_of(allocations, st.integers(0, 99)), max_size=25))
def test_cached_scores_equal_a_fresh_evaluation_after_any_allocate_or_release(name, ops):
    ledger = make_ledger(CACHE_CLUSTER)
    policy = make_policy(name, ledger, profile=PROFILE)
    for k, op in enumerate(ops):
        if isinstance(op, int):
            held = sorted(a.pod for a in ledger.allocations())
            if held:
                ledger.release(held[op % len(held)])
        else:
            node, cpu, raw = op
            by_card = {card: (card, milli, memory) for card, milli, memory in raw}  # one share per card
            shares = tuple(ledger_.CardShare(*share) for share in by_card.values())
            with contextlib.suppress(ledger_.CapacityError):  # refusals are part of the sequence
                ledger.allocate(ledger_.Allocation(f"x{k}", node=node, cpu_milli=cpu, shares=shares))
        for pod in PROBES:
            cached = policy.scores(pod).tolist()
            evaluations = [policy.evaluate(i, pod) for i in range(len(CACHE_CLUSTER))]
            fresh = [scoring.INFEASIBLE if e is None else e[0] for e in evaluations]
            assert cached == fresh, f"after step {k}, {pod.name}"
            assert make_policy(name, ledger, profile=PROFILE).scores(pod).tolist() == fresh
