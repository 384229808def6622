"""Every gang placer returns a plan the validator accepts, on random small clusters and queues.

Clusters have 2-6 nodes of 4 or 8 H800 or Ascend 910B cards in 1-3 islands, partly held by
running gangs (some preemptible). Queues hold 1-4 gangs of 1-4 pods: whole cards (1, 2, 4, 8)
or shares, mixed priorities, required or preferred island and host topology, some elastic.
The validator covers over-commit, partial gangs, link rules and topology, so the properties
here are: valid, snapshot untouched, the solver never worse than its greedy hint, and no
waiting gang that fits what the plan leaves free.
"""

from __future__ import annotations

import dataclasses

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, note, settings

from archipelago import cycle, workload
from archipelago.cluster import ledger as ledger_
from archipelago.placement import baselines, fit, greedy, plan, pools, validate
from archipelago.policies import scoring
from tests.builders import make_cluster, make_ledger, make_node
from tests.gang_builders import describe, make_gang, make_pod_set, make_running, make_snapshot

MODELS = ("H800", "Ascend910B")
TOPOLOGIES = (None, "island-required", "island-preferred", "host-required", "host-preferred")
CONFIG = plan.Config(budget_s=0.5, seed=0)
SPREAD_DELAY = 200.0
"""Longer than any pending gang of ``scenes`` has waited: every preferred gang is held."""
PLACERS = {
    "cycle": cycle.run,
    "cycle_spread_delay": lambda snapshot, pending, config: cycle.run(
        snapshot, pending, dataclasses.replace(config, spread_delay_s=SPREAD_DELAY)
    ),
    "first_fit": baselines.first_fit,
    "volcano_like": baselines.volcano_like,
}
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def pod_sets(draw, *, pods: int, role: str = "worker") -> workload.PodSet:
    """``pods`` pods of 1, 2, 4 or 8 whole cards or a quarter or half share, of one model or any."""
    model = draw(st.sampled_from((*MODELS, None)))
    shape = draw(st.sampled_from([(1, None), (2, None), (4, None), (8, None), (1, 250), (1, 500)]))
    return make_pod_set(role=role, count=pods, cards=shape[0], milli=shape[1], model=model)


@st.composite
def gangs(draw, *, name: str, running: bool = False) -> workload.Gang:
    """A gang of 1-4 pods in 1-2 pod sets (a cpu-only launcher or a second worker set), maybe elastic."""
    size = draw(st.integers(1, 2 if running else 4))
    split = draw(st.integers(0, size - 1))
    if not split:
        sets = [draw(pod_sets(pods=size))]
    elif draw(st.booleans()):
        sets = [make_pod_set(role="launcher", count=split, cards=0), draw(pod_sets(pods=size - split))]
    else:
        sets = [draw(pod_sets(pods=split, role="head")), draw(pod_sets(pods=size - split))]
    min_member = draw(st.integers(max(1, split), size))
    return make_gang(
        name=name,
        pod_sets=sets,
        min_member=min_member,
        priority=draw(st.integers(0, 3)),
        preemptible=running and draw(st.booleans()),
        topology=None if running else draw(st.sampled_from(TOPOLOGIES)),
        queued_at=draw(st.integers(0, 3)),
    )


@st.composite
def scenes(draw) -> tuple[plan.Snapshot, list[workload.Gang]]:
    """A snapshot of a small cluster with some running gangs, and the pending gangs of one cycle."""
    islands = draw(st.integers(1, 3))
    cluster = make_cluster(
        *[
            make_node(
                name=f"n{i}",
                cards=draw(st.sampled_from((4, 8))),
                model=draw(st.sampled_from(MODELS)),
                island=f"i{draw(st.integers(0, islands - 1))}",
            )
            for i in range(draw(st.integers(2, 6)))
        ]
    )
    ledger = make_ledger(cluster)
    running = []
    for k in range(draw(st.integers(0, 4))):
        gang = draw(gangs(name=f"r{k}", running=True))
        order = draw(st.permutations(range(len(cluster))))
        places = _first_fit(ledger, gang, order)
        if places is not None:
            running.append(make_running(ledger, gang, *places, started_at=draw(st.integers(0, 90))))
    pending = [draw(gangs(name=f"p{k}")) for k in range(draw(st.integers(1, 4)))]
    return make_snapshot(ledger, *running, now=100.0), pending


def _first_fit(
    ledger: ledger_.Ledger, gang: workload.Gang, order: list[int]
) -> list[tuple[str, tuple[int, ...]]] | None:
    """Each pod of ``gang`` on the first node of ``order`` where it fits, or None if one does not."""
    trial = ledger.copy()
    places = []
    for pod in gang.pods():
        for i in order:
            cards = fit.choose(trial, i, pod, gang.cards)
            if cards is not None:
                places.append((ledger.cluster.nodes[i].name, cards))
                trial.allocate(scoring.allocation(pod, scoring.Placement(i, cards, 0)))
                break
        else:
            return None
    return places


def _held(snapshot: plan.Snapshot) -> list:
    return sorted((a.pod, a.node, a.shares) for a in snapshot.ledger.allocations())


@pytest.mark.parametrize("placer", PLACERS)
@EXAMPLES
@given(scene=scenes())
def test_every_placer_returns_a_valid_plan_and_leaves_the_snapshot_alone(placer, scene):
    snapshot, pending = scene
    note(describe(snapshot))
    before = _held(snapshot)
    result = PLACERS[placer](snapshot, pending, CONFIG)
    assert validate.violations(snapshot, pending, result) == []
    assert _held(snapshot) == before


@st.composite
def crowded(draw) -> tuple[plan.Snapshot, list[workload.Gang]]:
    """Full H800 servers held by preemptible gangs of 4 or 8 cards started 0-90 s before now
    (100 s), and higher-priority gangs that have waited out the preemption delay: a cycle
    that must choose victims."""
    cluster = make_cluster(
        *[make_node(name=f"n{i}", cards=8, model="H800", island=f"i{i % 2}") for i in range(draw(st.integers(2, 4)))]
    )
    ledger = make_ledger(cluster)
    running = []
    for node in cluster.nodes:
        halves = [[0, 1, 2, 3], [4, 5, 6, 7]] if draw(st.booleans()) else [list(range(8))]
        for cards in halves:
            gang = make_gang(name=f"r{len(running)}", cards=len(cards), priority=0, preemptible=True)
            running.append(make_running(ledger, gang, (node.name, cards), started_at=draw(st.integers(0, 90))))
    pending = [
        make_gang(name=f"p{k}", pods=draw(st.integers(1, 2)), cards=draw(st.sampled_from((4, 8))), priority=5)
        for k in range(draw(st.integers(1, 2)))
    ]
    return make_snapshot(ledger, *running, now=100.0), pending


@EXAMPLES
@given(scene=crowded(), exempt=st.sampled_from((0.0, 30.0, 60.0, 95.0)))
def test_victims_are_those_past_their_exemption_and_are_needed(scene, exempt):
    """No gang is preempted within its first ``exempt`` seconds; without an exemption the first
    pending gang always preempts; a gang left waiting is told that preemption could not help,
    that there is nobody left to preempt, or (only with an exemption) that it waits on one."""
    snapshot, pending = scene
    note(describe(snapshot))
    result = cycle.run(snapshot, pending, dataclasses.replace(CONFIG, preemption_exempt_s=exempt))
    assert validate.violations(snapshot, pending, result) == []
    young = {e.gang for e in result.evictions if snapshot.now - snapshot.running[e.gang].started_at < exempt}
    assert young == set()
    if exempt == 0.0:
        assert result.evictions  # every server is held by victims: the first pending gang preempts
    # Left waiting: victims not enough, some exempt, or all taken by the gangs before it.
    codes = {plan.ReasonCode.PREEMPTION_INSUFFICIENT, plan.ReasonCode.INSUFFICIENT_CAPACITY}
    codes |= {plan.ReasonCode.PREEMPTION_EXEMPT} if exempt else set()
    assert {w.code for w in result.waiting.values()} <= codes, result.waiting


@pytest.mark.parametrize("queueing", plan.Queueing)
@EXAMPLES
@given(scene=scenes())
def test_the_solver_never_places_less_than_its_greedy_hint(queueing, scene):
    snapshot, pending = scene
    note(describe(snapshot))
    result = cycle.run(snapshot, pending, dataclasses.replace(CONFIG, queueing=queueing))
    if result.stats.used == "solver":
        assert result.stats.solver_objective >= result.stats.greedy_objective


@pytest.mark.parametrize("spread_delay", [0.0, SPREAD_DELAY])
@pytest.mark.parametrize("queueing", plan.Queueing)
@EXAMPLES
@given(scene=scenes())
def test_no_gang_left_waiting_fits_what_the_plan_leaves_free(queueing, spread_delay, scene):
    """Work conservation: the cycle never idles capacity a waiting gang could use now, nor
    (under MostGangs, whose objective does not count pods) one an elastic gang admitted short
    could. A gang held for one domain by the spread delay counts as fitting only if one
    domain holds it."""
    snapshot, pending = scene
    note(describe(snapshot))
    config = dataclasses.replace(CONFIG, preemption=False, queueing=queueing, spread_delay_s=spread_delay)
    result = cycle.run(snapshot, pending, config)
    after = snapshot.ledger.copy()
    for allocations in result.placed.values():
        for allocation in allocations:
            after.allocate(allocation)
    held = cycle._held_together(pools.State(snapshot.ledger.copy()), snapshot.now, pending, spread_delay)
    queue = greedy.order([held.get(g.name, g) for g in pending], queueing)
    state = pools.State(after, pools.avoid_of(queue))
    fitting = [g.name for g in queue if g.name not in result.placed and greedy.place(state, g) is not None]
    assert fitting == [], f"left waiting although they fit ({result.stats.used} plan)"
    if queueing is not plan.Queueing.MOST_GANGS:
        return  # the greedy placer grows an elastic gang inside its chosen island only
    short = {g.name: result.placed[g.name] for g in queue if 0 < len(result.placed.get(g.name, ())) < g.size}
    grown = [
        g.name for g in queue if g.name in short and len(greedy.grow(state, g, short[g.name])) > len(short[g.name])
    ]
    assert grown == [], f"admitted short although more of their pods fit ({result.stats.used} plan)"


def test_room_the_solvers_plan_leaves_goes_to_a_gang_still_waiting():
    """The case hypothesis found: the model left ``host`` (two 1-card heads on one node, its
    worker optional) out, though the solver's plan leaves three cards free on n1."""
    cluster = make_cluster(*(make_node(name=f"n{i}", cards=4, island=f"i{i % 2}") for i in range(3)))
    ledger = make_ledger(cluster)
    running = [
        make_running(ledger, make_gang(name=f"r{k}", pods=1, cards=1), where)
        for k, where in enumerate(("n0", "n0", "n1"))
    ]
    elastic = make_gang(name="elastic", pods=3, cards=2, min_member=1)
    host = make_gang(
        name="host",
        pod_sets=[make_pod_set(role="head", count=2, cards=1), make_pod_set(role="worker", count=1, cards=4)],
        min_member=2,
        topology="host-required",
    )
    result = cycle.run(make_snapshot(ledger, *running, now=100.0), [elastic, host], CONFIG)
    assert result.stats.used == "solver"  # greedy runs ``elastic`` on one pod in the tightest island
    assert len(result.placed["elastic"]) == 3 and len(result.placed["host"]) == 2


@pytest.mark.parametrize("queueing", plan.Queueing)
def test_an_elastic_gang_runs_every_pod_that_fits_under_every_strategy(queueing):
    """Under MostGangs the solver values the gang, not its pods: running two of its three
    4-card pods keeps the second server whole, which scores better, and left 4 cards idle."""
    cluster = make_cluster(*(make_node(name=f"n{i}", cards=8, island="i0") for i in range(2)))
    elastic = make_gang(name="elastic", pods=3, cards=4, min_member=2)
    result = cycle.run(make_snapshot(make_ledger(cluster)), [elastic], dataclasses.replace(CONFIG, queueing=queueing))
    assert len(result.placed["elastic"]) == 3


def test_room_an_eviction_frees_beyond_its_preemptors_need_goes_to_the_next_gang_that_fits():
    """The case hypothesis found: evicting r0's 8 cards for p0's 4 left 4 idle while p1, which
    needs 4 and has no victim of its own (r1 is exempt), waited."""
    cluster = make_cluster(*(make_node(name=f"n{i}", cards=8, model="H800", island=f"i{i}") for i in range(2)))
    ledger = make_ledger(cluster)
    running = [
        make_running(
            ledger, make_gang(name=f"r{i}", pods=1, cards=8, preemptible=True), (f"n{i}", list(range(8))), started_at=t
        )
        for i, t in enumerate((0.0, 41.0))
    ]
    pending = [make_gang(name=f"p{k}", pods=1, cards=4, priority=5) for k in range(2)]
    config = dataclasses.replace(CONFIG, preemption_exempt_s=60.0)
    result = cycle.run(make_snapshot(ledger, *running, now=100.0), pending, config)
    assert [e.gang for e in result.evictions] == ["r0"]
    assert set(result.placed) == {"p0", "p1"} and result.waiting == {}
