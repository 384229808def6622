"""The cycle's answers on tiny clusters, against the right answer found by brute force.

The oracles share no code with the placers: ``fits`` tries every assignment of pods to nodes
and HCCS rings with its own copy of the link rules, and ``cheapest_evictions`` tries every
set of victims (and every way an elastic victim may shrink). The tests compare which gangs
run and what the evictions cost, never which node a pod lands on.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Sequence

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, assume, given, note, settings

from archipelago import cycle, workload
from archipelago.cluster import ledger as ledger_
from archipelago.placement import plan, validate
from tests.builders import make_cluster, make_ledger, make_node, occupy
from tests.gang_builders import describe, make_allocations, make_gang, make_running, make_snapshot

CONFIG = plan.Config(budget_s=1.0, seed=0, preemption_exempt_s=0)  # the oracles know no exemption
EXAMPLES = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 100.0

RING = {"Ascend910B": 4}
"""Models whose multi-card pods must sit in one link group of this many cards (HCCS rings)."""


# --- oracles ---------------------------------------------------------------------------------


def free_bins(ledger: ledger_.Ledger, i: int) -> tuple[int, ...]:
    """Wholly free cards of node ``i``: one count per HCCS ring, or one for the whole node."""
    free = [f == 1000 for f in ledger.card_free[i]]
    ring = RING.get(ledger.cluster.nodes[i].model, len(free) or 1)
    return tuple(sum(free[r : r + ring]) for r in range(0, len(free), ring))


def allowed(model: str, cards: int, gang_cards: int, node_cards: int) -> bool:
    """Ascend's shape rules: 1, 2, 4 or 8 cards, and 8 per pod once the gang outgrows a server."""
    if model not in RING:
        return True
    return cards in (1, 2, 4, 8) and (gang_cards <= node_cards or cards == 8)


def takes(bins: tuple[int, ...], cards: int, ring: int | None):
    """Every free-card state a pod of ``cards`` whole cards can leave behind on one node."""
    if ring is not None and cards <= ring:
        candidates = [tuple(int(r == k) * cards for k in range(len(bins))) for r in range(len(bins))]
    else:
        candidates = [t for t in itertools.product(*(range(b + 1) for b in bins)) if sum(t) == cards]
    for taken in candidates:
        if all(t <= b for t, b in zip(taken, bins, strict=True)):
            yield tuple(b - t for b, t in zip(bins, taken, strict=True))


def fits(ledger: ledger_.Ledger, pods: Sequence[workload.PodRequest], nodes: Sequence[int] | None = None) -> bool:
    """Can every pod (whole cards only) run at once on ``nodes`` (default: all) of ``ledger``?"""
    cluster = ledger.cluster
    nodes = list(range(len(cluster))) if nodes is None else list(nodes)
    gang_cards = sum(p.cards for p in pods)
    pods = sorted(pods, key=lambda p: -p.cards)

    @functools.cache
    def place(k: int, state: tuple[tuple[int, ...], ...]) -> bool:
        if k == len(pods):
            return True
        pod = pods[k]
        for n, i in enumerate(nodes):
            node = cluster.nodes[i]
            if pod.models and node.model not in pod.models:
                continue
            if not allowed(node.model, pod.cards, gang_cards, node.card_count):
                continue
            for left in takes(state[n], pod.cards, RING.get(node.model)):
                if place(k + 1, (*state[:n], left, *state[n + 1 :])):
                    return True
        return False

    return place(0, tuple(free_bins(ledger, i) for i in nodes))


def release_options(running: plan.Running) -> list[tuple[str, ...]]:
    """Every set of pods a victim may lose: none, all, or (elastic) any set that keeps its bounds."""
    gang = running.gang
    options = [(), running.pods]
    if gang.elastic:
        roles = {p.name: p.role for p in gang.pods()}
        for n in range(1, len(running.pods)):
            for lost in itertools.combinations(running.pods, n):
                kept = [roles[p] for p in running.pods if p not in lost]
                bounds = zip(gang.pod_sets, gang.lower_bounds(), strict=True)
                if len(kept) >= gang.min_member and all(kept.count(s.role) >= b for s, b in bounds):
                    options.append(lost)
    return options


def cheapest_evictions(snapshot: plan.Snapshot, gang: workload.Gang) -> float:
    """The least work (card-seconds) any set of evictions loses to let ``gang`` run whole; inf if none."""
    victims = [r for r in snapshot.running.values() if r.gang.preemptible and r.gang.priority < gang.priority]
    best = math.inf
    for choice in itertools.product(*(release_options(r) for r in victims)):
        lost = sum(lost_work(snapshot, r, pods) for r, pods in zip(victims, choice, strict=True))
        if lost >= best:
            continue
        ledger = snapshot.ledger.copy()
        for pod in itertools.chain(*choice):
            ledger.release(pod)
        if fits(ledger, gang.pods()):
            best = lost
    return best


def lost_work(snapshot: plan.Snapshot, running: plan.Running, pods: Sequence[str]) -> float:
    return sum(len(snapshot.ledger.get(p).shares) for p in pods) * running.progress_since(snapshot.now)


# --- strategies ------------------------------------------------------------------------------


@st.composite
def busy_ledgers(draw, *, model: str, nodes: tuple[int, int], cards: Sequence[int] = (8,), islands: int = 1):
    """A ledger of ``nodes`` (min, max) nodes of ``model``, each with some whole cards busy."""
    cluster = make_cluster(
        *[
            make_node(
                name=f"n{i}",
                model=model,
                cards=draw(st.sampled_from(cards)),
                island=f"i{draw(st.integers(0, islands - 1))}",
            )
            for i in range(draw(st.integers(*nodes)))
        ]
    )
    ledger = make_ledger(cluster)
    for i, node in enumerate(cluster.nodes):
        busy = draw(st.sets(st.integers(0, node.card_count - 1), max_size=node.card_count))
        if busy:
            occupy(ledger, i, milli={j: 1000 for j in busy})
    return ledger


def gangs(*, name: str = "g", model: str, cards: Sequence[int], pods: tuple[int, int] = (1, 4), **fields):
    """Gangs of ``pods`` (min, max) pods of one of ``cards`` whole cards each; ``fields`` go to ``make_gang``."""
    return st.builds(
        lambda n, c: make_gang(name=name, pods=n, cards=c, model=model, **fields),
        st.integers(*pods),
        st.sampled_from(cards),
    )


def run(snapshot: plan.Snapshot, pending: list[workload.Gang], config: plan.Config = CONFIG) -> plan.Plan:
    """The cycle's plan, which must pass the validator."""
    result = cycle.run(snapshot, pending, config)
    assert validate.violations(snapshot, pending, result) == []
    return result


# --- tests -----------------------------------------------------------------------------------


@EXAMPLES
@given(
    ledger=busy_ledgers(model="Ascend910B", nodes=(1, 2), cards=(4, 8)),
    gang=gangs(model="Ascend910B", cards=(1, 2, 4)),
)
def test_an_ascend_gang_runs_iff_its_pods_fit_whole_hccs_rings(ledger, gang):
    result = run(make_snapshot(ledger), [gang])
    assert (gang.name in result.placed) == fits(ledger, gang.pods())
    for a in result.placed.get(gang.name, ()):
        assert len({card // 4 for card in (s.card for s in a.shares)}) == 1, f"{a.pod} spans HCCS rings"


@EXAMPLES
@given(
    ledger=busy_ledgers(model="H800", nodes=(2, 5), cards=(4, 8), islands=3),
    gang=gangs(model="H800", cards=(1, 2, 4, 8), topology="island-required"),
)
def test_a_gang_that_requires_one_island_runs_iff_some_island_holds_it(ledger, gang):
    result = run(make_snapshot(ledger), [gang])
    islands = ledger.cluster.domains("archipelago.dev/island").values()
    assert (gang.name in result.placed) == any(fits(ledger, gang.pods(), nodes) for nodes in islands)
    assert len({ledger.cluster.path(a.node)[:2] for a in result.placed.get(gang.name, ())}) <= 1


@EXAMPLES
@given(ledger=busy_ledgers(model="H800", nodes=(1, 3), cards=(4, 8)), gang=gangs(model="H800", cards=(1, 2, 4, 8)))
def test_a_gang_runs_whole_or_not_at_all(ledger, gang):
    result = run(make_snapshot(ledger), [gang])
    if fits(ledger, gang.pods()):
        assert len(result.placed[gang.name]) == gang.size
    else:
        assert result.pods_placed == 0 and gang.name in result.waiting


@EXAMPLES
@given(
    ledger=busy_ledgers(model="H800", nodes=(1, 3), cards=(4, 8)),
    gang=gangs(model="H800", cards=(1, 2, 4), min_member=2, pods=(2, 5)),
)
def test_an_elastic_gang_runs_as_many_pods_as_fit_and_never_fewer_than_min_member(ledger, gang):
    result = run(make_snapshot(ledger), [gang])
    pods = gang.pods()
    most = max((n for n in range(gang.size + 1) if fits(ledger, pods[:n])), default=0)
    if most < gang.min_member:
        assert result.pods_placed == 0 and gang.name in result.waiting
    else:
        assert len(result.placed[gang.name]) == most


@st.composite
def contested(draw, *, model: str):
    """Running gangs on a full-ish cluster and one urgent gang that fits only after evictions."""
    ledger = draw(busy_ledgers(model=model, nodes=(1, 2)))
    running = []
    for k in range(draw(st.integers(1, 4))):
        size = draw(st.integers(1, 3))
        gang = make_gang(
            name=f"r{k}",
            pods=size,
            cards=draw(st.sampled_from((1, 2, 4))),
            model=model,
            priority=draw(st.integers(0, 2)),
            preemptible=draw(st.integers(0, 3)) > 0,
            min_member=draw(st.integers(1, size)),
        )
        places: list[str] = []
        for _ in gang.pods():
            free = [node.name for node in ledger.cluster.nodes if _placeable(ledger, gang, [*places, node.name])]
            if not free:
                break
            places.append(draw(st.sampled_from(free)))
        if len(places) == gang.size:
            running.append(make_running(ledger, gang, *places, started_at=draw(st.integers(0, 90))))
    snapshot = make_snapshot(ledger, *running, now=NOW)
    emptied = ledger.copy()
    for r in running:
        if r.gang.preemptible:
            for pod in r.pods:
                emptied.release(pod)
    shapes = [make_gang(name="urgent", pods=n, cards=c, model=model, priority=5) for n in (1, 2) for c in (2, 4, 8)]
    urgent = [g for g in shapes if not fits(ledger, g.pods()) and fits(emptied, g.pods())]
    assume(urgent)
    return snapshot, draw(st.sampled_from(urgent))


def _placeable(ledger: ledger_.Ledger, gang: workload.Gang, places: list[str]) -> bool:
    """Do the gang's first pods fit on the nodes named, in order?"""
    try:
        make_allocations(ledger, gang, *places)
    except ValueError:
        return False
    return True


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(scene=st.sampled_from(["H800", "Ascend910B"]).flatmap(lambda model: contested(model=model)))
def test_preemption_loses_the_least_work_and_evicts_whole_gangs_unless_elastic(scene):
    snapshot, urgent = scene
    note(describe(snapshot))
    cheapest = cheapest_evictions(snapshot, urgent)
    result = run(snapshot, [urgent])
    assert urgent.name in result.placed
    assert math.isclose(sum(e.lost_card_seconds for e in result.evictions), cheapest, abs_tol=1e-6)
    for e in result.evictions:
        assert e.whole or snapshot.running[e.gang].gang.elastic


@pytest.mark.parametrize("topology", [None, "island-preferred"])
def test_a_gang_that_prefers_one_island_pays_more_lost_work_to_get_one(topology):
    """Islands a (n0, n1) and b (n2, n3), full of one-pod spot gangs: two young ones (80
    card-seconds lost each), one per island, and two old ones (800 each). The cheapest room
    for two 8-card pods spans both islands (160); the cheapest inside one island costs 880."""
    ledger = make_ledger(make_cluster(*(make_node(name=f"n{i}", island="ab"[i // 2]) for i in range(4))))
    ages = {"young-a": ("n0", 90), "old-a": ("n1", 0), "young-b": ("n2", 90), "old-b": ("n3", 0)}
    running = [
        make_running(ledger, make_gang(name=name, pods=1, preemptible=True), node, started_at=start)
        for name, (node, start) in ages.items()
    ]
    urgent = make_gang(name="urgent", pods=2, priority=5, topology=topology)

    result = run(make_snapshot(ledger, *running, now=NOW), [urgent])

    evicted = {e.gang for e in result.evictions}
    if topology is None:
        assert evicted == {"young-a", "young-b"}
    else:
        assert evicted in ({"young-a", "old-a"}, {"young-b", "old-b"})
        assert (
            len({ledger.cluster.nodes[a.node].labels["archipelago.dev/island"] for a in result.placed["urgent"]}) == 1
        )


@st.composite
def one_fits(draw, lead: dict, other: dict):
    """A ledger, and two gangs that each fit it but not both (``make_gang`` keywords each):
    ``lead`` drawn among the shapes that fit, ``other`` among those that then no longer do."""
    ledger = draw(busy_ledgers(model="H800", nodes=(1, 2)))
    shapes = [(n, c) for n in range(1, 5) for c in (1, 2, 4, 8)]
    first = [make_gang(pods=n, cards=c, **lead) for n, c in shapes]
    first = draw(st.sampled_from([g for g in first if fits(ledger, g.pods())] or [None]))
    assume(first is not None)
    second = [make_gang(pods=n, cards=c, **other) for n, c in shapes]
    second = [g for g in second if fits(ledger, g.pods()) and not fits(ledger, [*first.pods(), *g.pods()])]
    assume(second)
    return ledger, first, draw(st.sampled_from(second))


def rivals():
    """Gangs "high" (priority 2, queued last) and "low" (priority 1, queued first); room for one."""
    return one_fits({"name": "high", "priority": 2, "queued_at": 1.0}, {"name": "low", "priority": 1})


@EXAMPLES
@given(scene=rivals())
def test_with_room_for_one_of_two_gangs_the_higher_priority_one_runs(scene):
    ledger, high, low = scene
    result = run(make_snapshot(ledger), [low, high])
    assert set(result.placed) == {"high"}


def peers():
    """Gangs "first" and "second" (queued later, often the larger, which admitted cards alone would
    prefer), of one priority; room for one."""
    return one_fits({"name": "first", "priority": 1}, {"name": "second", "priority": 1, "queued_at": 1.0})


@EXAMPLES
@given(scene=peers())
def test_best_effort_fifo_runs_the_first_queued_of_two_gangs_of_one_priority_when_one_fits(scene):
    ledger, first, second = scene
    note(f"first {first.cards} cards, second {second.cards} cards")
    fifo = dataclasses.replace(CONFIG, queueing=plan.Queueing.BEST_EFFORT_FIFO)
    result = run(make_snapshot(ledger), [second, first], fifo)
    assert set(result.placed) == {"first"}


@EXAMPLES
@given(scene=peers())
def test_most_cards_runs_the_larger_of_two_gangs_of_one_priority_when_one_fits(scene):
    ledger, first, second = scene
    note(f"first {first.cards} cards, second {second.cards} cards")
    result = run(make_snapshot(ledger), [second, first])
    assert len(result.placed) == 1
    if first.cards != second.cards:
        assert set(result.placed) == {max((first, second), key=lambda g: g.cards).name}


@st.composite
def crowds(draw):
    """A ledger, a gang "big" queued first that fits alone, and two or three gangs queued after
    it, of fewer cards in all, that fit together but none of them beside "big"."""
    ledger = draw(busy_ledgers(model="H800", nodes=(1, 2)))
    shapes = [(n, c) for n in range(1, 5) for c in (1, 2, 4, 8)]
    chosen = draw(st.lists(st.sampled_from([(n, c) for n, c in shapes if n * c <= 4]), min_size=2, max_size=3))
    small = [make_gang(name=f"s{j}", pods=n, cards=c, priority=1, queued_at=1.0 + j) for j, (n, c) in enumerate(chosen)]
    assume(fits(ledger, [p for g in small for p in g.pods()]))
    larger = [
        make_gang(name="big", pods=n, cards=c, priority=1) for n, c in shapes if n * c > sum(g.cards for g in small)
    ]
    alone = [
        g for g in larger if fits(ledger, g.pods()) and not any(fits(ledger, [*g.pods(), *s.pods()]) for s in small)
    ]
    assume(alone)
    return ledger, draw(st.sampled_from(alone)), small


@settings(EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(scene=crowds())
def test_most_gangs_runs_the_many_smaller_gangs_of_one_priority_in_place_of_one_larger(scene):
    ledger, big, small = scene
    note(f"big {big.cards} cards, the others {[g.cards for g in small]}")
    most = dataclasses.replace(CONFIG, queueing=plan.Queueing.MOST_GANGS)
    result = run(make_snapshot(ledger), [big, *small], most)
    assert set(result.placed) == {g.name for g in small}
