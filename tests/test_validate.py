"""The validator accepts a correct plan and names every rule a hand-broken plan breaks.

Each broken plan is the correct plan of ``scene()`` with one thing changed, so each test shows
one rule: every violation reported is about the gang or pod changed, and one names the rule.
"""

from __future__ import annotations

import dataclasses

import pytest

from archipelago import workload
from archipelago.placement import plan, validate
from tests.builders import make_cluster, make_ledger, make_node
from tests.gang_builders import (
    make_allocations,
    make_eviction,
    make_gang,
    make_plan,
    make_pod_set,
    make_running,
    make_snapshot,
    make_wait,
)

NOW = 100.0


@dataclasses.dataclass
class Scene:
    snapshot: plan.Snapshot
    pending: dict[str, workload.Gang]
    plan: plan.Plan

    def violations(self, **changes) -> list[str]:
        """The violations of the scene's plan with ``changes`` (Plan fields) applied."""
        return validate.violations(self.snapshot, self.pending.values(), dataclasses.replace(self.plan, **changes))

    def running(self, name: str) -> plan.Running:
        return self.snapshot.running[name]

    def evict(self, name: str, **fields) -> plan.Eviction:
        return make_eviction(self.running(name), now=NOW, **{"for_gang": "high", **fields})

    def place(self, name: str, *on) -> tuple:
        return make_allocations(self.snapshot.ledger, self.pending[name], *on)


def scene() -> Scene:
    """Island a: n0 (a preemptible gang holds it) and n1 (an elastic gang holds it); island b: n2
    and an Ascend node n3. Gang "high" takes n0 and half of n1 after evicting "low" and shrinking
    "elastic"; "ring" takes one HCCS ring of n3; "later" waits."""
    ledger = make_ledger(
        make_cluster(
            make_node(name="n0", island="a"),
            make_node(name="n1", island="a"),
            make_node(name="n2", island="b"),
            make_node(name="n3", island="b", model="Ascend910B"),
        )
    )
    low = make_running(ledger, make_gang(name="low", pods=1, preemptible=True), "n0", started_at=10)
    elastic = make_running(
        ledger,
        make_gang(name="elastic", pods=4, cards=2, min_member=2, preemptible=True),
        *["n1"] * 4,
        started_at=50,
    )
    steady = make_running(ledger, make_gang(name="steady", pods=1, cards=4), "n2")
    pending = {
        "high": make_gang(name="high", pods=3, cards=4, priority=5, topology="island-required"),
        "ring": make_gang(name="ring", pods=1, cards=2, model="Ascend910B", priority=1),
        "later": make_gang(name="later", pods=1, cards=8),
    }
    snapshot = make_snapshot(ledger, low, elastic, steady, now=NOW)
    freed = tuple(ledger.get(pod).shares[0].card for pod in elastic.pods[2:])
    cards = tuple(c for card in freed for c in (card, card + 1))
    good = make_plan(
        placed={
            "high": make_allocations(
                ledger, pending["high"], ("n0", (0, 1, 2, 3)), ("n0", (4, 5, 6, 7)), ("n1", cards)
            ),
            "ring": make_allocations(ledger, pending["ring"], ("n3", (0, 1))),
        },
        evictions=[
            make_eviction(low, for_gang="high", now=NOW),
            make_eviction(elastic, for_gang="high", pods=elastic.pods[2:], now=NOW),
        ],
        waiting=["later"],
    )
    return Scene(snapshot, pending, good)


def reported(found: list[str], subject: str, *words: str) -> None:
    """Every violation is about ``subject`` (a gang or pod), and one names all of ``words``."""
    assert found, "the validator found nothing wrong"
    assert all(subject in v for v in found), found
    assert any(all(word in v for word in words) for v in found), found


def test_a_correct_plan_has_no_violations_and_passes_the_check():
    s = scene()
    assert validate.violations(s.snapshot, s.pending.values(), s.plan) == []
    assert validate.check(s.snapshot, s.pending.values(), s.plan) is None


def test_check_raises_invalid_plan_listing_every_violation():
    s = scene()
    broken = dataclasses.replace(s.plan, placed={**s.plan.placed, "ghost": ()}, waiting={})
    with pytest.raises(validate.InvalidPlan) as raised:
        validate.check(s.snapshot, s.pending.values(), broken)
    assert len(raised.value.violations) == 2
    assert isinstance(raised.value, ValueError)
    assert "ghost" in str(raised.value) and "later" in str(raised.value)


def test_validating_never_changes_the_snapshot():
    s = scene()
    before = [(a.pod, a.node, a.shares) for a in s.snapshot.ledger.allocations()]
    free = [list(f) for f in s.snapshot.ledger.card_free]
    s.violations(placed={**s.plan.placed, "later": s.place("later", ("n0", (0, 1, 2, 3, 4, 5, 6, 7)))}, waiting={})
    assert [(a.pod, a.node, a.shares) for a in s.snapshot.ledger.allocations()] == before
    assert s.snapshot.ledger.card_free == free


# --- evictions -------------------------------------------------------------------------------


def test_an_eviction_must_name_a_running_gang():
    s = scene()
    ghost = plan.Eviction("ghost", ("ghost-worker-0",), True, 0.0, "high")
    reported(s.violations(evictions=[*s.plan.evictions, ghost]), "ghost", "running")


def test_an_eviction_may_only_list_pods_the_gang_runs():
    s = scene()
    foreign = dataclasses.replace(s.plan.evictions[1], pods=(*s.plan.evictions[1].pods, "steady-worker-0"))
    reported(s.violations(evictions=[s.plan.evictions[0], foreign]), "elastic", "steady-worker-0")


def test_an_eviction_may_only_list_pods_the_ledger_holds():
    s = scene()
    low = s.running("low")
    s.snapshot.running["low"] = dataclasses.replace(low, pods=(*low.pods, "low-worker-1"))
    whole = dataclasses.replace(s.plan.evictions[0], pods=(*low.pods, "low-worker-1"))
    reported(s.violations(evictions=[whole, s.plan.evictions[1]]), "low-worker-1", "ledger")


def test_a_whole_eviction_lists_every_running_pod():
    s = scene()
    elastic = s.evict("elastic", pods=s.running("elastic").pods[2:], whole=True)
    reported(s.violations(evictions=[s.plan.evictions[0], elastic]), "elastic", "whole", "running")


def test_only_an_elastic_gang_loses_part_of_its_pods():
    s = scene()
    partial = dataclasses.replace(s.plan.evictions[0], whole=False)
    reported(s.violations(evictions=[partial, s.plan.evictions[1]]), "low", "elastic")


def test_a_partial_eviction_keeps_min_member_pods():
    s = scene()
    elastic = s.evict("elastic", pods=s.running("elastic").pods[1:])
    reported(s.violations(evictions=[s.plan.evictions[0], elastic]), "elastic", "min_member 2")


def test_a_partial_eviction_keeps_each_pod_sets_lower_bound():
    s = scene()
    ledger = s.snapshot.ledger
    gang = make_gang(
        name="mixed",
        preemptible=True,
        min_member=2,
        pod_sets=[make_pod_set(role="launcher", cards=0), make_pod_set(count=3, cards=1)],
    )
    s.snapshot.running["mixed"] = make_running(ledger, gang, *["n2"] * 4)
    launcher_only = s.evict("mixed", pods=["mixed-launcher-0"])
    reported(s.violations(evictions=[*s.plan.evictions, launcher_only]), "mixed", "launcher", "lower bound 1")


def test_only_a_preemptible_gang_is_evicted():
    s = scene()
    reported(s.violations(evictions=[*s.plan.evictions, s.evict("steady")]), "steady", "not preemptible")


def test_an_eviction_makes_room_for_a_gang_the_plan_places():
    s = scene()
    for_later = dataclasses.replace(s.plan.evictions[0], for_gang="later")
    reported(s.violations(evictions=[for_later, s.plan.evictions[1]]), "low", "later", "does not place")


def test_an_eviction_makes_room_only_for_a_gang_of_strictly_higher_priority():
    s = scene()
    s.pending["high"] = dataclasses.replace(s.pending["high"], priority=0)
    reported(s.violations(), "priority 0", "eviction of gang low", "not above")


# --- placements ------------------------------------------------------------------------------


def test_a_placed_gang_is_pending():
    s = scene()
    reported(s.violations(placed={**s.plan.placed, "ghost": ()}), "ghost", "not pending")


def test_a_placed_gang_is_not_already_running():
    s = scene()
    s.pending["steady"] = s.running("steady").gang
    again = s.place("steady", ("n2", (4, 5, 6, 7)))
    found = s.violations(placed={**s.plan.placed, "steady": again})
    assert any("steady" in v and "already running" in v for v in found), found


def test_a_placement_holds_only_the_gangs_own_pods():
    s = scene()
    foreign = dataclasses.replace(s.plan.placed["ring"][0], pod="ring-launcher-0")
    found = s.violations(placed={**s.plan.placed, "ring": (foreign,)})
    assert any("ring-launcher-0" in v and "not one of its pods" in v for v in found), found


def test_a_placement_holds_each_pod_once():
    s = scene()
    ring = s.plan.placed["ring"][0]
    twice = (ring, dataclasses.replace(ring, shares=s.place("ring", ("n3", (2, 3)))[0].shares))
    reported(s.violations(placed={**s.plan.placed, "ring": twice}), "ring-worker-0", "twice")


def test_a_placed_gang_runs_at_least_min_member_pods():
    s = scene()
    reported(s.violations(placed={**s.plan.placed, "high": s.plan.placed["high"][:2]}), "high", "min_member 3")


def test_a_placed_gang_runs_each_pod_sets_lower_bound():
    s = scene()
    s.pending["mixed"] = make_gang(
        name="mixed", min_member=2, pod_sets=[make_pod_set(role="launcher", cards=0), make_pod_set(count=3, cards=1)]
    )
    workers_only = s.place("mixed", "n2", "n2", "n2")[1:]
    workers_only = tuple(dataclasses.replace(a, pod=f"mixed-worker-{k}") for k, a in enumerate(workers_only))
    reported(s.violations(placed={**s.plan.placed, "mixed": workers_only}), "mixed", "launcher", "lower bound 1")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"cpu_milli": 500}, ("500 milli-cpu",)),
        ({"memory_mib": 1}, ("1 MiB",)),
        ({"shares": "drop-one"}, ("holds 1 cards", "asks for 2")),
        ({"shares": "half-share"}, ("not shares of 1000 milli",)),
        ({"shares": "device-memory"}, ("0 MiB of device memory",)),
    ],
    ids=["cpu", "memory", "card-count", "milli-per-card", "device-memory"],
)
def test_each_allocation_matches_its_pod_request(change, words):
    s = scene()
    ring = s.plan.placed["ring"][0]
    shares = {
        "drop-one": ring.shares[:1],
        "half-share": (dataclasses.replace(ring.shares[0], milli=500), ring.shares[1]),
        "device-memory": (dataclasses.replace(ring.shares[0], memory_mib=1024), ring.shares[1]),
    }
    if "shares" in change:
        change = {"shares": shares[change["shares"]]}
    wrong = dataclasses.replace(ring, **change)
    reported(s.violations(placed={**s.plan.placed, "ring": (wrong,)}), "ring-worker-0", *words)


def test_a_pod_goes_only_to_an_eligible_node():
    s = scene()
    on_h800 = s.place("ring", ("n2", (4, 5)))
    reported(s.violations(placed={**s.plan.placed, "ring": on_h800}), "ring-worker-0", "n2", "not eligible")


def test_a_pod_keeps_its_models_link_rules():
    s = scene()
    s.pending["odd"] = make_gang(name="odd", pods=1, cards=3, model="Ascend910B")
    odd = s.place("odd", ("n3", (4, 5, 6)))
    reported(s.violations(placed={**s.plan.placed, "odd": odd}), "odd-worker-0", "n3", "link rules")


def test_a_pod_that_fits_one_hccs_ring_sits_in_one_ring():
    s = scene()
    across = s.place("ring", ("n3", (3, 4)))
    reported(s.violations(placed={**s.plan.placed, "ring": across}), "ring-worker-0", "n3", "one link group")


def test_a_pod_too_big_for_one_ring_may_span_rings():
    s = scene()
    s.pending["ring"] = make_gang(name="ring", pods=1, cards=8, model="Ascend910B", priority=1)
    assert s.violations(placed={**s.plan.placed, "ring": s.place("ring", "n3")}) == []


def test_a_gang_that_requires_one_island_sits_in_one_island():
    s = scene()
    spread = s.place("high", ("n0", (0, 1, 2, 3)), ("n0", (4, 5, 6, 7)), ("n2", (4, 5, 6, 7)))
    evictions = s.plan.evictions[:1]
    reported(s.violations(placed={**s.plan.placed, "high": spread}, evictions=evictions), "high", "n0", "n2")


@pytest.mark.parametrize(
    "level, on, words",
    [
        ("host-required", [("n2", (4, 5)), ("n3", (4, 5))], ("kubernetes.io/hostname", "n2", "n3")),
        ("link-group-required", [("n3", (0, 1)), ("n3", (4, 5))], ("one link group", "n3")),
    ],
    ids=["host", "link-group"],
)
def test_a_gang_that_requires_one_node_or_link_group_sits_there(level, on, words):
    s = scene()
    s.pending["pair"] = make_gang(name="pair", cards=2, model=None, topology=level)
    pair = s.place("pair", *on)
    found = s.violations(placed={**s.plan.placed, "pair": pair})
    if level == "host-required":
        reported(found, "pair", *words)
    else:
        assert any("pair" in v and all(w in v for w in words) for v in found), found


def test_a_gang_is_never_both_placed_and_waiting():
    s = scene()
    reported(s.violations(waiting={**s.plan.waiting, "ring": make_wait("ring")}), "ring", "both")


def test_every_pending_gang_not_placed_has_a_reason_to_wait():
    s = scene()
    reported(s.violations(waiting={}), "later", "neither placed nor")


def test_a_wait_names_a_pending_gang():
    s = scene()
    reported(s.violations(waiting={**s.plan.waiting, "ghost": make_wait("ghost")}), "ghost", "not pending")


# --- capacity --------------------------------------------------------------------------------


def test_a_placement_never_over_commits_a_card():
    s = scene()
    on_steady = s.place("later", ("n2", tuple(range(8))))
    reported(s.violations(placed={**s.plan.placed, "later": on_steady}, waiting={}), "later", "over-commits", "card 0")


def test_two_gangs_never_take_the_same_card():
    s = scene()
    s.pending["twin"] = make_gang(name="twin", pods=1, cards=2, model="Ascend910B")
    twin = s.place("twin", ("n3", (1, 2)))
    reported(s.violations(placed={**s.plan.placed, "twin": twin}), "twin", "over-commits", "card 1")


def test_a_placement_needs_the_evictions_that_make_its_room():
    s = scene()
    reported(s.violations(evictions=s.plan.evictions[1:]), "high", "over-commits")
