"""The LP bound on card allocation: hand-computed cases, bound properties, and the openb figure."""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from archipelago import cluster, workload
from archipelago.cluster import devices, nodes
from archipelago.sim import bound, protocols


def make_node(
    name: str = "n0", *, cards: int, model: str = "T4", unhealthy: frozenset[int] = frozenset()
) -> nodes.Node:
    return nodes.Node(
        name, cpu_milli=64_000, memory_mib=262_144, devices=devices.cards(model, cards, unhealthy=unhealthy)
    )


def make_cluster(*node_list: nodes.Node) -> cluster.Cluster:
    return cluster.build(node_list)


def sharing(*millis: int, models: Sequence[str] = (), resource: str | None = None) -> list[workload.PodRequest]:
    return [
        workload.PodRequest(f"s{k}-{m}", cards=1, milli_per_card=m, models=frozenset(models), resource=resource)
        for k, m in enumerate(millis)
    ]


def exclusive(cards: int, *, count: int = 1, models: Sequence[str] = ()) -> list[workload.PodRequest]:
    return [
        workload.PodRequest(f"x{k}-{cards}", cards=cards, milli_per_card=1000, models=frozenset(models))
        for k in range(count)
    ]


def milli(c: cluster.Cluster, pods: Sequence[workload.PodRequest]) -> float:
    return bound.allocation_bound(c, pods).milli


# --- hand-computed cases -------------------------------------------------------------------


def test_two_cards_hold_two_of_three_sharing_pods_that_cannot_pair_up():
    # 600 + 600 > 1000, so each 600 needs its own card; the 400 fills one of them: 1600.
    assert milli(make_cluster(make_node(cards=2)), sharing(600, 600, 400)) == pytest.approx(1600)


def test_pods_that_need_a_model_absent_from_the_cluster_get_nothing():
    c = make_cluster(make_node(cards=4, model="T4"))
    assert milli(c, sharing(500, 500, models=["A10"]) + exclusive(1, models=["H800"])) == 0


def test_pods_that_need_another_resource_get_nothing():
    c = make_cluster(make_node(cards=2, model="T4"))
    assert milli(c, sharing(500, resource="huawei.com/Ascend910")) == 0
    assert milli(c, sharing(500, resource="nvidia.com/gpu")) == pytest.approx(500)


def test_an_eight_card_pod_gets_nothing_on_a_cluster_of_four_cards():
    c = make_cluster(make_node(cards=4))
    assert milli(c, exclusive(8)) == 0
    assert milli(c, exclusive(8) + exclusive(2)) == pytest.approx(2000)


def test_a_multi_card_pod_needs_that_many_cards_on_one_node_not_in_the_pool():
    # Two 4-card nodes hold 8 cards, but no node holds the 8-card pod.
    c = make_cluster(make_node("a", cards=4), make_node("b", cards=4))
    assert milli(c, exclusive(8)) == 0


def test_a_good_pattern_mix_beats_first_fit_decreasing():
    # First-fit decreasing puts 700 and 600 on separate cards and then has no room for 500:
    # 1300. Pairing 500 + 500 on one card and 700 on the other allocates 1700.
    c = make_cluster(make_node(cards=2))
    pods = sharing(700, 600, 500, 500)
    assert first_fit_decreasing(c, pods) == 1300
    assert milli(c, pods) == pytest.approx(1700)


def test_an_exclusive_pod_and_a_sharing_pod_beat_two_sharing_pods_that_do_not_pair():
    # {1000} + {600} = 1600 beats {600} + {600} = 1200.
    assert milli(make_cluster(make_node(cards=2)), sharing(600, 600) + exclusive(1)) == pytest.approx(1600)


def test_model_constraints_keep_pods_on_their_own_cards():
    # One T4 and one A10 card. Both 700s may use only the T4, so one of them is left out; the
    # T4 takes 700 + 300 and the A10 the 400: 1400.
    c = make_cluster(make_node("t", cards=1, model="T4"), make_node("a", cards=1, model="A10"))
    pods = sharing(700, 700, models=["T4"]) + sharing(400, 300)
    assert milli(c, pods) == pytest.approx(700 + 300 + 400)


def test_unhealthy_cards_do_not_count():
    c = make_cluster(make_node(cards=4, unhealthy=frozenset({0, 1, 2})))
    result = bound.allocation_bound(c, exclusive(1, count=3))
    assert result.milli == pytest.approx(1000)
    assert result.pct == pytest.approx(100)


def test_a_multi_card_sharing_pod_counts_as_one_share_on_each_of_its_cards():
    # Two cards of 600 each; the 500 fits on neither of them afterwards.
    c = make_cluster(make_node(cards=2))
    pods = [workload.PodRequest("m", cards=2, milli_per_card=600)] + sharing(500)
    assert milli(c, pods) == pytest.approx(1200)


def test_cpu_only_pods_contribute_nothing():
    c = make_cluster(make_node(cards=2))
    assert milli(c, [workload.PodRequest("cpu", cpu_milli=4000)]) == 0


def test_an_empty_cluster_bounds_everything_at_zero():
    result = bound.allocation_bound(make_cluster(), sharing(500))
    assert (result.milli, result.pct) == (0, 0)


def test_a_bound_cut_short_by_the_time_limit_is_still_an_upper_bound():
    c = make_cluster(make_node(cards=2))
    pods = sharing(700, 600, 500, 500)
    result = bound.allocation_bound(c, pods, time_limit_s=0)
    assert not result.converged
    assert result.milli >= 1700


# --- properties on random instances --------------------------------------------------------


def first_fit_decreasing(c: cluster.Cluster, pods: Sequence[workload.PodRequest]) -> int:
    """A feasible card-level packing, node by node: largest pods first, first card that fits."""
    free = [[1000 if d.healthy else 0 for d in n.devices] for n in c.nodes]
    allocated = 0
    for pod in sorted(pods, key=lambda p: (-p.milli_per_card, -p.cards)):
        for node, cards in zip(c.nodes, free, strict=True):
            if pod.cards == 0 or (pod.models and node.model not in pod.models):
                continue
            fitting = [i for i, f in enumerate(cards) if f >= pod.milli_per_card][: pod.cards]
            if len(fitting) == pod.cards:
                for i in fitting:
                    cards[i] -= pod.milli_per_card
                allocated += pod.milli
                break
    return allocated


def random_instance(rng: random.Random) -> tuple[cluster.Cluster, list[workload.PodRequest]]:
    node_list = [
        make_node(f"n{i}", cards=rng.choice([1, 2, 4, 8]), model=rng.choice(["T4", "A10"]))
        for i in range(rng.randint(1, 6))
    ]
    pods = []
    for k in range(rng.randint(0, 40)):
        models = rng.choice([(), ("T4",), ("A10",), ("T4", "A10")])
        if rng.random() < 0.3:
            pods.append(
                workload.PodRequest(
                    f"x{k}", cards=rng.choice([1, 2, 4, 8]), milli_per_card=1000, models=frozenset(models)
                )
            )
        else:
            pods.append(
                workload.PodRequest(
                    f"s{k}", cards=1, milli_per_card=rng.randrange(50, 1000, 10), models=frozenset(models)
                )
            )
    return make_cluster(*node_list), pods


@pytest.mark.parametrize("seed", range(40))
def test_the_bound_is_never_below_a_feasible_packing_nor_above_capacity_or_demand(seed: int):
    c, pods = random_instance(random.Random(seed))
    result = bound.allocation_bound(c, pods)
    capacity = c.total_cards * 1000
    assert result.converged
    assert result.milli >= first_fit_decreasing(c, pods) - 1e-6
    assert result.milli <= min(capacity, sum(p.milli for p in pods)) + 1e-6


# --- the openb trace ------------------------------------------------------------------------


def traces_dir() -> Path:
    return Path(os.environ.get("ARCHIPELAGO_TRACES") or Path(__file__).resolve().parents[2] / "shared" / "traces")


def load_openb() -> tuple[cluster.Cluster, list[workload.PodRequest]]:
    root = traces_dir() / "alibaba-gpu-v2023"
    if not (root / "openb_pod_list_default.csv").exists():
        pytest.skip(f"the openb trace is not at {root} (set ARCHIPELAGO_TRACES)")
    with open(root / "openb_node_list_gpu_node.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["sn"])
    c = cluster.build(
        nodes.Node(r["sn"], int(r["cpu_milli"]), int(r["memory_mib"]), devices.cards(r["model"], int(r["gpu"])))
        for r in rows
    )
    with open(root / "openb_pod_list_default.csv", newline="") as f:
        pods = [
            workload.PodRequest(
                r["name"],
                cpu_milli=int(r["cpu_milli"]),
                memory_mib=int(r["memory_mib"]),
                cards=int(r["num_gpu"]),
                milli_per_card=int(r["gpu_milli"]) if int(r["num_gpu"]) else 0,
                models=frozenset(m for m in r["gpu_spec"].split("|") if m),
            )
            for r in csv.DictReader(f)
        ]
    return c, pods


def arrived_at(arrivals: Sequence[workload.PodRequest], point: int, capacity: int) -> list[workload.PodRequest]:
    """The arrivals up to the last one at which arrived demand rounds to ``point``% or less."""
    demand = end = 0
    for k, pod in enumerate(arrivals):
        demand += pod.milli
        if round(demand / capacity * 100) > point:
            break
        end = k + 1
    return list(arrivals[:end])


def test_the_openb_default_trace_is_bounded_near_96_9_percent_at_100_percent_demand():
    c, pods = load_openb()
    capacity = c.total_cards * 1000
    assert capacity == 6_212_000
    arrivals = protocols.fgd_arrivals(pods, capacity_milli=capacity, ratio=1.3, rng=random.Random(42))
    at_100 = bound.allocation_bound(c, arrived_at(arrivals, 100, capacity), time_limit_s=30)
    at_130 = bound.allocation_bound(c, arrivals, time_limit_s=30)
    assert at_100.converged and at_130.converged
    assert 96.5 <= at_100.pct <= 97.3
    assert 99.5 <= at_130.pct <= 100
