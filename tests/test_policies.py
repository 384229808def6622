"""Each placement policy's choice on small hand-made clusters, with the arithmetic worked out.

Expected scores come from the formulas of ``shared/traces/README.md`` (sections 6-8 and "FGD's
fragmentation F") and the policies' docstrings, computed here, never by the policies' helpers.
"""

from __future__ import annotations

import math

import pytest

from archipelago import policies
from archipelago.policies import scoring
from tests.builders import (
    leave_free,
    make_cluster,
    make_ledger,
    make_node,
    make_nodes,
    make_pod,
    make_policy,
    make_task,
    occupy,
)


def readme_fragmentation(profile, model: str | None, cpu_free: int, card_free: list[int]) -> float:
    """F = sum over typical tasks t of p_t * A_t, literally as the README defines A_t."""
    f = 0.0
    for t in profile:
        if t.cards == 0 or not t.runs_on(model):
            a = sum(card_free)
        elif sum(x >= t.milli_per_card for x in card_free) >= t.cards and cpu_free >= t.cpu_milli:
            a = sum(x for x in card_free if x < t.milli_per_card)
        else:
            a = sum(card_free)
        f += t.weight * a
    return f


def readme_fgd_score(before: float, after: float) -> int:
    return math.trunc(100 / (1 + math.exp(-(before - after) / 1000)))


# --- FGD ---------------------------------------------------------------------------------


def test_fgd_prefers_the_node_that_keeps_room_for_the_typical_task():
    # Profile: every task takes two whole cards. A one-card pod on the 2-card node leaves
    # [0, 1000]: no room for a 2-card task, so F goes 0 -> 1000 and the score is
    # trunc(100 * sigmoid(-1)) = 26. On the 3-card node it leaves [0, 1000, 1000]: F stays 0,
    # score 50. BestFit would take the tighter 2-card node.
    profile = (make_task(cards=2, weight=1.0),)
    ledger = make_ledger(make_cluster(make_node(name="small", cards=2), make_node(name="big", cards=3)))
    pod = make_pod(cards=1, cpu_milli=0)
    small_after = readme_fragmentation(profile, "H800", 128_000, [0, 1000])
    assert (readme_fgd_score(0, small_after), readme_fgd_score(0, 0)) == (26, 50)

    assert make_policy("fgd", ledger, profile=profile).place(pod) == scoring.Placement(node=1, cards=(0,), score=50)
    assert make_policy("bestfit", ledger).place(pod).node == 0


def test_fgd_prefers_the_node_whose_cpu_still_fits_the_typical_task():
    # The typical task needs 32 cores. After a 16-core pod, "lean" keeps 24 cores: the task no
    # longer fits, so all 7000 free milli become fragments and the score is
    # trunc(100 * sigmoid(-7)) = 0. "roomy" keeps 84 cores: F stays 0, score 50.
    profile = (make_task(cards=1, cpu_milli=32_000, weight=1.0),)
    ledger = make_ledger(
        make_cluster(make_node(name="lean", cpu_milli=40_000), make_node(name="roomy", cpu_milli=100_000))
    )
    pod = make_pod(cards=1, cpu_milli=16_000)
    lean_after = readme_fragmentation(profile, "H800", 24_000, [0] + [1000] * 7)
    assert (lean_after, readme_fgd_score(0, lean_after)) == (7000, 0)

    placement = make_policy("fgd", ledger, profile=profile).place(pod)
    assert (placement.node, placement.score) == (1, 50)


def test_fgd_puts_a_sharing_pod_on_the_card_that_leaves_fewest_fragments():
    # Typical task: 500 milli of one card. Card 0 has 600 free, card 1 1000. A 400-milli pod
    # on card 0 (the tightest) leaves [200, 1000]: 200 milli too small for the task, F = 200.
    # On card 1 it leaves [600, 600]: F = 0, which FGD prefers (score 50, not 45).
    profile = (make_task(cards=1, milli=500, weight=1.0),)
    ledger = make_ledger(make_cluster(make_node(cards=2)))
    leave_free(ledger, 0, [600, 1000])
    pod = make_pod(cards=1, milli=400)
    on_card_0 = readme_fragmentation(profile, "H800", 127_000, [200, 1000])
    on_card_1 = readme_fragmentation(profile, "H800", 127_000, [600, 600])
    assert (on_card_0, on_card_1) == (200, 0)
    assert (readme_fgd_score(0, on_card_0), readme_fgd_score(0, on_card_1)) == (45, 50)

    assert make_policy("fgd", ledger, profile=profile).place(pod) == scoring.Placement(node=0, cards=(1,), score=50)
    assert make_policy("bestfit", ledger).place(pod).cards == (0,)


def test_fgd_breaks_a_tie_between_cards_by_lowest_index():
    ledger = make_ledger(make_cluster(make_node(cards=4)))
    leave_free(ledger, 0, [0, 700, 700, 700])
    placement = make_policy("fgd", ledger, profile=(make_task(cards=1, milli=300, weight=1.0),)).place(
        make_pod(cards=1, milli=300)
    )
    assert placement.cards == (1,)


def test_fgd_without_a_profile_is_refused():
    ledger = make_ledger(make_cluster(make_node()))
    with pytest.raises(ValueError, match="profile"):
        policies.create("fgd", ledger, scoring.Context())


# --- BestFit -----------------------------------------------------------------------------


def test_bestfit_picks_the_tightest_node():
    # Pod: one card, 8 cores, on 128-core nodes.
    # "empty" (8 free cards):  100 * (1 - 0.5 * 120000/128000 - 0.5 * 7000/8000) = 9.375  -> 9
    # "used" (6 free cards):   100 * (1 - 0.5 * 120000/128000 - 0.5 * 5000/8000) = 21.875 -> 21
    ledger = make_ledger(make_cluster(make_node(name="empty"), make_node(name="used")))
    leave_free(ledger, "used", [0, 0] + [1000] * 6)
    pod = make_pod(cards=1, cpu_milli=8_000)
    policy = make_policy("bestfit", ledger)
    assert policy.scores(pod).tolist() == [9, 21]
    assert policy.place(pod) == scoring.Placement(node=1, cards=(2,), score=21)


def test_bestfit_weighs_leftover_cpu_as_much_as_leftover_cards():
    # Same cards; "busy" has 64 of 128 cores free. After a 1-core, 1-card pod:
    # "idle": 100 * (1 - 0.5 * 127000/128000 - 0.5 * 7000/8000) = 6.64 -> 6
    # "busy": 100 * (1 - 0.5 *  63000/128000 - 0.5 * 7000/8000) = 31.64 -> 31
    ledger = make_ledger(make_cluster(make_node(name="idle"), make_node(name="busy")))
    leave_free(ledger, "busy", cpu_milli=64_000)
    policy = make_policy("bestfit", ledger)
    assert policy.scores(make_pod(cards=1)).tolist() == [6, 31]


def test_bestfit_puts_a_sharing_pod_on_the_tightest_fitting_card():
    ledger = make_ledger(make_cluster(make_node(cards=4)))
    leave_free(ledger, 0, [1000, 400, 200, 300])
    assert make_policy("bestfit", ledger).place(make_pod(cards=1, milli=300)).cards == (3,)


# --- GpuPacking --------------------------------------------------------------------------


def test_gpupacking_prefers_a_used_card_then_a_used_node_then_an_empty_node():
    # A 200-milli pod on 8-card nodes:
    # "empty":         max(33 - 8, 8) = 25
    # "full-card":     must open a whole card: max(50 - 1, 33) = 49
    # "partial-card":  fits on card 0, 60% free: max(100 - 60 / 10, 50) = 94
    ledger = make_ledger(make_cluster(*make_nodes(3)))
    leave_free(ledger, 1, [0] + [1000] * 7)
    leave_free(ledger, 2, [1000, 600] + [1000] * 6)
    pod = make_pod(cards=1, milli=200)
    policy = make_policy("gpupacking", ledger)
    assert policy.scores(pod).tolist() == [25, 49, 94]
    assert policy.place(pod) == scoring.Placement(node=2, cards=(1,), score=94)


@pytest.mark.parametrize("cards, score", [(1, 32), (2, 31), (8, 25), (16, 17), (20, 20)])
def test_gpupacking_scores_an_empty_node_by_its_card_count(cards, score):
    # max(33 - G, G)
    ledger = make_ledger(make_cluster(make_node(cards=cards, model="Ascend910C")))
    assert make_policy("gpupacking", ledger).scores(make_pod(cards=1)).tolist() == [score]


def test_gpupacking_scores_opening_cards_on_a_used_node_by_the_number_opened():
    # max(50 - opened, 33): 3 cards -> 47; the 500-milli card is not whole, so it cannot host.
    ledger = make_ledger(make_cluster(make_node(cards=8)))
    leave_free(ledger, 0, [500] + [1000] * 7)
    placement = make_policy("gpupacking", ledger).place(make_pod(cards=3))
    assert placement == scoring.Placement(node=0, cards=(1, 2, 3), score=47)


def test_gpupacking_sums_the_free_percent_of_every_used_card():
    # Two 300-milli shares on cards 1 and 2 with 40% and 50% free: 100 - 90 / 10 = 91.
    ledger = make_ledger(make_cluster(make_node(cards=4)))
    leave_free(ledger, 0, [1000, 400, 500, 1000])
    policy = make_policy("gpupacking", ledger)
    assert policy.scores(make_pod(cards=2, milli=300)).tolist() == [91]


def test_gpupacking_places_a_multi_card_share_on_the_used_cards_it_scored():
    # Free [1000, 500, 500, 1000]; two 500-milli shares fit on the used cards 1 and 2, which
    # is what the score 100 - (50 + 50) / 10 = 90 describes ("cards are taken least-free
    # first"); taking card 0 would open a whole card, a 49 by the policy's own bands.
    ledger = make_ledger(make_cluster(make_node(cards=4)))
    leave_free(ledger, 0, [1000, 500, 500, 1000])
    placement = make_policy("gpupacking", ledger).place(make_pod(cards=2, milli=500))
    assert placement == scoring.Placement(node=0, cards=(1, 2), score=90)


def test_gpupacking_scores_cpu_only_pods_zero_everywhere():
    ledger = make_ledger(make_cluster(*make_nodes(3)))
    leave_free(ledger, 1, [500] + [1000] * 7)
    assert make_policy("gpupacking", ledger).scores(make_pod(cards=0)).tolist() == [0, 0, 0]


# --- GpuClustering -----------------------------------------------------------------------


def test_gpuclustering_prefers_a_node_that_already_holds_the_same_shape():
    # Pod shape: one card at 500 milli. Fullness = 25 * (8000 - free milli) // 8000.
    # "other-shape" holds a 2-card pod (6000 free):   0 + 25 * 2000 // 8000 =  6
    # "mixed" holds both shapes (5500 free):         50 + 25 * 2500 // 8000 = 57
    # "empty" (8000 free):                           25 + 0                 = 25
    # "same-shape" holds a 500-milli pod (7500 free): 75 + 25 * 500 // 8000 = 76
    ledger = make_ledger(make_cluster(*make_nodes(4)))
    occupy(ledger, 0, milli={0: 1000, 1: 1000})
    occupy(ledger, 1, milli={0: 1000, 1: 1000})
    occupy(ledger, 1, milli={2: 500})
    occupy(ledger, 3, milli={0: 500})
    pod = make_pod(cards=1, milli=500)
    policy = make_policy("gpuclustering", ledger)
    assert policy.scores(pod).tolist() == [6, 57, 25, 76]
    assert policy.place(pod) == scoring.Placement(node=3, cards=(0,), score=76)


def test_gpuclustering_treats_every_sharing_pod_as_one_affinity():
    # The simulator tags all sharing pods "share-gpu": a node holding a 300-milli pod is the
    # 500-milli pod's own kind (75 + 25 * 300 // 8000 = 75), a node holding a whole card is not
    # (0 + 25 * 1000 // 8000 = 3).
    ledger = make_ledger(make_cluster(*make_nodes(2)))
    occupy(ledger, 0, milli={0: 300})
    occupy(ledger, 1, milli={0: 1000})
    policy = make_policy("gpuclustering", ledger)
    assert policy.scores(make_pod(cards=1, milli=500)).tolist() == [75, 3]
    assert policy.scores(make_pod(cards=1, milli=1000)).tolist() == [0, 78]


# --- DotProduct --------------------------------------------------------------------------


def test_dotproduct_picks_the_fuller_node():
    # Pod: 16 cores, 1 card. dot = cpu_free/128000 * 16000/128000 + milli_free/8000 * 1000/8000
    # "empty": 1.0 * 0.125 + 1.0 * 0.125 = 0.25  -> 100 * (1 - 0.125)  = 87.5  -> 87
    # "half":  0.5 * 0.125 + 0.5 * 0.125 = 0.125 -> 100 * (1 - 0.0625) = 93.75 -> 93
    ledger = make_ledger(make_cluster(make_node(name="empty"), make_node(name="half")))
    leave_free(ledger, "half", [0] * 4 + [1000] * 4, cpu_milli=64_000)
    pod = make_pod(cards=1, cpu_milli=16_000)
    policy = make_policy("dotprod", ledger)
    assert policy.scores(pod).tolist() == [87, 93]
    assert policy.place(pod) == scoring.Placement(node=1, cards=(4,), score=93)


# --- Random ------------------------------------------------------------------------------


def random_test_cluster():
    return make_cluster(
        make_node(name="a10", model="A10"),
        make_node(name="ok0"),
        make_node(name="tiny-cpu", cpu_milli=100),
        make_node(name="ok1"),
        make_node(name="no-cards", cards=0),
        make_node(name="ok2"),
    )


def test_random_only_ever_picks_feasible_nodes_and_uses_all_of_them():
    ledger = make_ledger(random_test_cluster())
    policy = make_policy("random", ledger, seed=7)
    chosen = {policy.place(make_pod(name=f"p{k}", cards=1, models={"H800"})).node for k in range(60)}
    assert chosen == {1, 3, 5}


def test_random_is_reproducible_for_a_seed():
    def run(seed: int) -> list[int]:
        policy = make_policy("random", make_ledger(random_test_cluster()), seed=seed)
        nodes = []
        for k in range(30):
            pod = make_pod(name=f"p{k}", cards=1, milli=300)
            placement = policy.place(pod)
            policy.ledger.allocate(scoring.allocation(pod, placement))
            nodes.append(placement.node)
        return nodes

    assert run(3) == run(3)
    assert run(3) != run(4)


# --- ties and registry -------------------------------------------------------------------

DETERMINISTIC = [name for name in policies.NAMES if name != "random"]


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_ties_go_to_the_lowest_rank(name):
    ledger = make_ledger(make_cluster(*make_nodes(4)))
    pod = make_pod(cards=1)
    assert make_policy(name, ledger, rank=[3, 1, 0, 2]).place(pod).node == 2
    assert make_policy(name, ledger).place(pod).node == 0


def test_a_rank_must_cover_every_node():
    ledger = make_ledger(make_cluster(*make_nodes(3)))
    with pytest.raises(ValueError, match="rank"):
        make_policy("bestfit", ledger, rank=[0, 1])


def test_unknown_policy_name_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="fgd"):
        policies.create("first-fit", make_ledger(make_cluster(make_node())), scoring.Context())


def test_registry_holds_archipelago_first_then_the_six_policies_of_the_paper():
    assert policies.NAMES[0] == "archipelago"
    assert set(policies.NAMES[1:]) == {"fgd", "bestfit", "gpupacking", "gpuclustering", "dotprod", "random"}
