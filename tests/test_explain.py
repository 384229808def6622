"""Every reason code, each on a tiny cluster built to cause it, with the numbers in its sentence."""

from __future__ import annotations

import dataclasses

from archipelago import cycle
from archipelago.cluster import nodes
from archipelago.placement import plan
from tests.builders import make_cluster, make_ledger, make_node, make_nodes
from tests.gang_builders import make_gang, make_pod_set, make_running, make_snapshot

Code = plan.ReasonCode


def _wait(ledger, *pending, running=(), now=0.0) -> dict[str, plan.Wait]:
    result = cycle.run(make_snapshot(ledger, *running, now=now), list(pending), plan.Config(budget_s=0.5))
    return result.waiting


def _waits_then_retries(snapshot, gang, config, code, message) -> tuple[float, plan.Plan]:
    """Check that the cycle at ``snapshot`` evicts nobody and leaves ``gang`` waiting with ``code``
    and ``message``; return the retry time it asks for and the plan of the cycle then."""
    early = cycle.run(snapshot, [gang], config)
    wait = early.waiting[gang.name]
    assert not early.evictions and (wait.code, wait.message) == (code, message)
    assert early.retry_at is not None
    return early.retry_at, cycle.run(dataclasses.replace(snapshot, now=early.retry_at), [gang], config)


def _two_islands(cards: int = 8, model: str = "H800"):
    return make_ledger(
        make_cluster(
            *make_nodes(2, prefix="a", cards=cards, model=model, island="island-a"),
            *make_nodes(2, prefix="b", cards=cards, model=model, island="island-b"),
        )
    )


def test_a_pod_no_card_model_admits_is_an_invalid_shape():
    ledger = make_ledger(make_cluster(make_node(model="Ascend910B")))
    wait = _wait(ledger, make_gang(pods=1, cards=3, model="Ascend910B"))["g"]
    assert wait.code is Code.INVALID_SHAPE
    assert "1, 2, 4, 8 cards, not 3" in wait.message


def test_no_node_of_the_model_or_past_the_taints_means_no_matching_nodes():
    tainted = make_node(model="H800", taints=[nodes.Taint("dedicated", "infer")])
    wait = _wait(make_ledger(make_cluster(tainted)), make_gang(pods=1, model="H800"))["g"]
    assert wait.code is Code.NO_MATCHING_NODES
    assert "worker" in wait.message and "H800" in wait.message


def test_a_gang_bigger_than_every_matching_node_exceeds_the_cluster():
    wait = _wait(_two_islands(), make_gang(pods=5, cards=8))["g"]
    assert wait.code is Code.EXCEEDS_CLUSTER
    assert wait.message == "needs 40 x H800; matching nodes hold 32 x H800 in all"


def test_a_required_island_bigger_than_any_island_is_too_small():
    wait = _wait(_two_islands(), make_gang(pods=3, cards=8, topology="island-required"))["g"]
    assert wait.code is Code.TOPOLOGY_TOO_SMALL
    assert wait.message == "needs 24 x H800 in one island; the largest island has 16 x H800 (island-a)"


def test_a_gang_that_fits_only_before_higher_priority_gangs_is_held_for_them():
    first = make_gang(name="first", pods=4, cards=8, priority=10)
    second = make_gang(name="second", pods=1, cards=8, priority=1)
    wait = _wait(_two_islands(), first, second)
    assert wait["second"].code is Code.HELD_FOR_HIGHER_PRIORITY


def test_too_few_free_cards_and_nobody_to_preempt_is_insufficient_capacity():
    ledger = _two_islands()
    busy = make_running(ledger, make_gang(name="busy", pods=3, cards=8), "a0", "a1", "b0")
    wait = _wait(ledger, make_gang(pods=2, cards=8), running=[busy])["g"]
    assert wait.code is Code.INSUFFICIENT_CAPACITY
    assert wait.message == "needs 16 x H800; 8 x H800 are free on matching nodes"


def test_when_evicting_every_victim_is_not_enough_preemption_is_insufficient():
    ledger = _two_islands()
    keep = make_running(ledger, make_gang(name="keep", pods=3, cards=8, priority=50), "a0", "a1", "b0")
    spot = make_running(ledger, make_gang(name="spot", pods=1, cards=4, preemptible=True), ("b1", [0, 1, 2, 3]))
    wait = _wait(ledger, make_gang(pods=2, cards=8, priority=10), running=[keep, spot], now=30.0)["g"]
    assert wait.code is Code.PREEMPTION_INSUFFICIENT
    assert "4 x H800 are free and the 4 held by lower-priority preemptible gangs were not enough" in wait.message


def test_a_gang_that_could_preempt_waits_out_the_preemption_delay_first():
    ledger = _two_islands()
    keep = make_running(ledger, make_gang(name="keep", pods=3, cards=8, priority=50), "a0", "a1", "b0")
    spot = make_running(ledger, make_gang(name="spot", pods=1, cards=8, preemptible=True), "b1")
    gang = make_gang(pods=1, cards=8, priority=10)  # queued at 0; the default delay is 30 s
    snapshot = make_snapshot(ledger, keep, spot, now=12.0)

    retry_at, later = _waits_then_retries(
        snapshot,
        gang,
        plan.Config(budget_s=0.5),
        Code.PREEMPTION_DELAYED,
        "needs 8 x H800; 0 x H800 are free and 8 held by lower-priority preemptible gangs; "
        "preemption is considered once it has waited 30 s",
    )
    assert retry_at == 30.0
    assert [e.gang for e in later.evictions] == ["spot"] and "g" in later.placed and later.retry_at is None


def test_a_gang_whose_victims_have_only_just_started_waits_out_their_exemption():
    ledger = _two_islands()
    keep = make_running(ledger, make_gang(name="keep", pods=3, cards=8, priority=50), "a0", "a1", "b0")
    spot = make_gang(pods=1, cards=4, preemptible=True)
    old = make_running(ledger, dataclasses.replace(spot, name="old"), ("b1", [0, 1, 2, 3]), started_at=0.0)
    young = make_running(ledger, dataclasses.replace(spot, name="young"), ("b1", [4, 5, 6, 7]), started_at=90.0)
    gang = make_gang(pods=1, cards=8, priority=10)  # queued at 0: it has waited out the preemption delay
    snapshot = make_snapshot(ledger, keep, old, young, now=100.0)

    assert {e.gang for e in cycle.run(snapshot, [gang], plan.Config(budget_s=0.5)).evictions} == {"old", "young"}
    retry_at, later = _waits_then_retries(
        snapshot,
        gang,
        plan.Config(budget_s=0.5, preemption_exempt_s=60),
        Code.PREEMPTION_EXEMPT,
        "needs 8 x H800; 0 x H800 are free and 8 held by lower-priority preemptible gangs, 4 of them "
        "by gangs that have run less than 60 s, which are exempt from preemption until then",
    )
    assert retry_at == 150.0  # when "young" has run 60 s
    assert {e.gang for e in later.evictions} == {"old", "young"} and "g" in later.placed


def test_free_cards_spread_over_islands_leave_a_required_island_gang_fragmented():
    ledger = _two_islands()
    busy = make_running(ledger, make_gang(name="busy", pods=2, cards=8, priority=50), "a0", "b0")
    wait = _wait(ledger, make_gang(pods=2, cards=8, topology="island-required"), running=[busy])["g"]
    assert wait.code is Code.TOPOLOGY_FRAGMENTED
    assert wait.message == "needs 16 x H800 in one island; largest free island has 8 x H800 (island-a)"


def test_a_preferred_island_gang_waits_out_the_spread_delay_for_one_island_then_spreads():
    ledger = _two_islands()
    busy = make_running(ledger, make_gang(name="busy", pods=2, cards=8, priority=50), "a0", "b0")
    gang = make_gang(pods=2, cards=8, topology="island-preferred", queued_at=100.0)
    config = plan.Config(budget_s=0.5, spread_delay_s=300)

    retry_at, later = _waits_then_retries(
        make_snapshot(ledger, busy, now=160.0),
        gang,
        config,
        Code.SPREAD_DELAYED,
        "needs 16 x H800 in one island; largest free island has 8 x H800 (island-a); "
        "it prefers one island and spreads over several once it has waited 300 s",
    )
    assert retry_at == 400.0
    assert {ledger.cluster.nodes[a.node].name for a in later.placed["g"]} == {"a1", "b1"}
    assert not later.waiting and later.retry_at is None
    # Without the delay it spreads at once, even queued after the cycle's clock (clock skew).
    for now in (160.0, 50.0):
        spread = cycle.run(make_snapshot(ledger, busy, now=now), [gang], plan.Config(budget_s=0.5))
        assert "g" in spread.placed


def test_a_preferred_gang_no_island_could_hold_spreads_at_once_despite_the_spread_delay():
    gang = make_gang(pods=3, cards=8, topology="island-preferred")  # 24 cards; islands of 16
    result = cycle.run(make_snapshot(_two_islands()), [gang], plan.Config(budget_s=0.5, spread_delay_s=300))
    assert "g" in result.placed and result.retry_at is None


def test_free_cards_scattered_over_nodes_leave_a_big_pod_node_fragmented():
    ledger = _two_islands()
    busy = make_running(
        ledger,
        make_gang(name="busy", pods=4, cards=4, priority=50),
        ("a0", [0, 1, 2, 3]),
        ("a1", [0, 1, 2, 3]),
        ("b0", [0, 1, 2, 3]),
        ("b1", [0, 1, 2, 3]),
    )
    wait = _wait(ledger, make_gang(pods=1, cards=8), running=[busy])["g"]
    assert wait.code is Code.NODE_FRAGMENTED
    assert "16 x H800 are free on matching nodes, but too few together on one node" in wait.message


def test_every_pending_gang_is_either_placed_or_explained():
    ledger = _two_islands()
    pending = [make_gang(name=f"g{k}", pods=k % 3 + 1, cards=8, priority=k % 2) for k in range(6)]
    result = cycle.run(make_snapshot(ledger), pending, plan.Config(budget_s=0.5))
    assert set(result.placed) | set(result.waiting) == {g.name for g in pending}
    assert not set(result.placed) & set(result.waiting)
    assert all(w.message for w in result.waiting.values())


def test_elastic_victims_shrink_instead_of_dying():
    ledger = _two_islands()
    elastic = make_gang(name="elastic", pods=4, cards=8, preemptible=True, min_member=2)
    running = make_running(ledger, elastic, "a0", "a1", "b0", "b1", started_at=0.0)
    result = cycle.run(
        make_snapshot(ledger, running, now=100.0),
        [make_gang(name="urgent", pods=1, cards=8, priority=10)],
        plan.Config(budget_s=0.5),
    )
    assert "urgent" in result.placed
    (eviction,) = result.evictions
    assert not eviction.whole and len(eviction.pods) == 1 and eviction.lost_card_seconds == 800


def test_a_launcher_without_cards_is_placed_with_its_workers():
    gang = make_gang(pod_sets=[make_pod_set(role="launcher", cards=0), make_pod_set(count=2, cards=8)])
    result = cycle.run(make_snapshot(_two_islands()), [gang], plan.Config(budget_s=0.5))
    assert len(result.placed["g"]) == 3


def test_a_launcher_that_could_run_anywhere_does_not_lend_other_models_cards_to_the_reason():
    ledger = make_ledger(
        make_cluster(
            *make_nodes(3, prefix="h", model="H800", island="island-a"),
            *make_nodes(2, prefix="a", model="A100-SXM4-80GB", island="island-a"),
        )
    )
    busy = make_running(ledger, make_gang(name="busy", pods=1, cards=8, priority=50), "h0")
    gang = make_gang(pods=3, cards=8, launcher=True, topology="island-required")
    wait = _wait(ledger, gang, running=[busy])["g"]
    assert wait.code is Code.INSUFFICIENT_CAPACITY
    assert wait.message == "needs 24 x H800; 16 x H800 are free on matching nodes"


def test_gangs_of_one_shape_each_wait_under_their_own_name_for_the_same_reason():
    ledger = _two_islands()
    busy = make_running(ledger, make_gang(name="busy", pods=3, cards=8), "a0", "a1", "b0")
    twins = [make_gang(name=name, pods=2, cards=8, queued_at=t) for t, name in enumerate(("twin-1", "twin-2"))]
    other = make_gang(name="other", pods=2, cards=8, priority=3)
    waits = _wait(ledger, *twins, other, running=[busy])
    assert {name: w.gang for name, w in waits.items()} == {"twin-1": "twin-1", "twin-2": "twin-2", "other": "other"}
    assert waits["twin-1"].message == waits["twin-2"].message == waits["other"].message
    assert "8 x H800 are free" in waits["twin-1"].message
