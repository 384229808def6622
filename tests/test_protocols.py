"""The evaluation protocols: the FGD arrival order, the KPI curve, and the replay of trace times."""

from __future__ import annotations

import contextlib
import itertools
import random
import signal
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from archipelago import policies, workload
from archipelago.sim import demo, protocols, scenario
from tests.builders import make_cluster, make_node, make_pod


def demand(pods: Sequence[workload.PodRequest]) -> int:
    return sum(p.milli for p in pods)


def names(pods: Sequence[workload.PodRequest]) -> list[str]:
    return [p.name for p in pods]


def sharing_pods(count: int, milli: int, *, prefix: str = "p") -> list[workload.PodRequest]:
    return [make_pod(name=f"{prefix}{i:03d}", cards=1, milli=milli) for i in range(count)]


def whole_card_pods(count: int, *, cards: int = 1, prefix: str = "p") -> list[workload.PodRequest]:
    return [make_pod(name=f"{prefix}{i:03d}", cards=cards) for i in range(count)]


def arrivals(pods: Sequence[workload.PodRequest], capacity: int, *, ratio: float = 1.3, seed: int = 42):
    return protocols.fgd_arrivals(pods, capacity, ratio, random.Random(seed))


def one_node_scenario(*pods: scenario.TracePod | workload.PodRequest, cards: int, **node_fields) -> scenario.Scenario:
    trace = tuple(p if isinstance(p, scenario.TracePod) else scenario.TracePod(p) for p in pods)
    return scenario.Scenario("tiny", make_cluster(make_node(name="n0", cards=cards, **node_fields)), trace)


def timed(pod: workload.PodRequest, created: float | None, deleted: float | None = None) -> scenario.TracePod:
    return scenario.TracePod(pod, created=created, deleted=deleted)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail the test instead of hanging when the block runs longer than ``seconds`` (main thread only)."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except TimeoutError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- fgd_arrivals: order (README step 3) ------------------------------------------------------


def test_arrivals_shuffle_the_name_sorted_pods_whatever_the_input_order():
    pods = sharing_pods(20, 500)
    shuffled = pods.copy()
    random.Random(0).shuffle(shuffled)
    expected = names(pods)
    random.Random(42).shuffle(expected)

    for given in (pods, list(reversed(pods)), shuffled):
        got = arrivals(given, capacity=100_000, seed=42)
        assert names(got[: len(pods)]) == expected
        assert names(got) == names(arrivals(pods, capacity=100_000, seed=42))


def test_copies_are_appended_after_all_originals_without_a_second_shuffle():
    pods = sharing_pods(30, 500)
    got = arrivals(pods, capacity=20_000)

    assert len(got) > len(pods)
    assert sorted(names(got[: len(pods)])) == names(pods)
    assert all("~" in p.name for p in got[len(pods) :])


def test_copies_are_draws_of_original_pods_with_unique_names():
    pods = sharing_pods(10, 300) + whole_card_pods(5, cards=2, prefix="w")
    got = arrivals(pods, capacity=50_000)
    originals = {p.name: p for p in pods}

    assert len(set(names(got))) == len(got)
    for copy in got[len(pods) :]:
        source = originals[copy.name.split("~")[0]]
        assert copy.fit_key == source.fit_key
        assert copy.name not in originals


def test_the_same_seed_gives_the_same_arrivals_and_another_seed_another_order():
    pods = sharing_pods(40, 250)
    assert names(arrivals(pods, 20_000, seed=1)) == names(arrivals(pods, 20_000, seed=1))
    assert names(arrivals(pods, 20_000, seed=1)) != names(arrivals(pods, 20_000, seed=2))


# --- fgd_arrivals: tuning to ratio x capacity ---------------------------------------------------


def test_tuning_stops_on_the_per_card_milli_of_the_draw_but_counts_every_card():
    # One 2-card pod on ten cards, target 9,500 milli. The total reaches 8,000 after three
    # copies; the next draw is tested with 8,000 + 1,000 (per card) <= 9,500, so it is kept and
    # the total becomes 10,000. Testing the whole 2,000 would stop at 8,000 (4 arrivals);
    # adding only 1,000 per copy would go on to 9,000 (8 arrivals).
    pod = make_pod(name="pair", cards=2)
    got = arrivals([pod], capacity=10_000, ratio=0.95)

    assert len(got) == 5
    assert demand(got) == 10_000


def test_a_cpu_only_draw_never_stops_the_tuning():
    # Nine cpu-only pods and one whole-card pod: most draws are cpu-only, yet tuning goes on
    # until a card draw would overflow the target.
    pods = [make_pod(name=f"cpu{i}") for i in range(9)] + [make_pod(name="gpu", cards=1)]
    target = 1.3 * 20_000
    got = arrivals(pods, capacity=20_000)

    assert demand(got) <= target < demand(got) + 1_000
    assert any(p.name.startswith("cpu") and "~" in p.name for p in got)


def test_a_workload_of_cpu_only_pods_gets_its_arrivals_without_hanging():
    pods = [make_pod(name=f"cpu{i}") for i in range(3)]
    with deadline(1):
        got = arrivals(pods, capacity=8_000)
    assert sorted(names(got[:3])) == names(pods)


def test_a_trace_above_the_target_loses_pods_until_its_demand_fits():
    pods = whole_card_pods(10)
    got = arrivals(pods, capacity=4_000)  # target 5,200 of 10,000 arrived

    assert demand(got) <= 5_200
    assert len(got) == 5
    assert set(names(got)) <= set(names(pods))


# --- tie_break_rank and kpi_window_end ----------------------------------------------------------


def test_tie_break_rank_is_a_permutation_of_the_nodes_fixed_by_the_seed():
    rank = protocols.tie_break_rank(50, random.Random(3))
    assert sorted(rank.tolist()) == list(range(50))
    assert np.array_equal(rank, protocols.tie_break_rank(50, random.Random(3)))
    assert not np.array_equal(rank, protocols.tie_break_rank(50, random.Random(4)))


def test_kpi_window_ends_at_the_pod_that_takes_rounded_demand_past_the_point():
    # On one card: 50%, 90%, 100%, 100.4% (rounds to 100), 100.6% (rounds to 101), ...
    pods = [make_pod(name=f"p{k}", cards=1, milli=m) for k, m in enumerate((500, 400, 100, 4, 2, 300))]
    assert protocols.kpi_window_end(pods, 1_000) == 4
    assert protocols.kpi_window_end(pods, 1_000, point=50) == 1
    assert protocols.kpi_window_end(pods[:4], 1_000) == 4


# --- KPI recording (README step 9) --------------------------------------------------------------


def test_kpi_is_the_mean_allocation_over_the_events_whose_demand_rounds_to_the_point():
    # 4-milli shares on one card: event k has arrived 0.4k % and allocated min(0.4k, 100) %.
    # Arrived demand rounds to 100 at k = 249, 250, 251, where 99.6, 100 and 100 are allocated.
    # The node has the cpu for all 325 pods; only the card runs out.
    scn = one_node_scenario(*sharing_pods(250, 4), cards=1, cpu_milli=1_000_000)
    result = protocols.run_fgd(scn, "bestfit", 42)

    assert result.pods == 325  # tuned to 1,300 milli
    assert result.failed == 75
    assert result.kpi(100) == pytest.approx((99.6 + 100 + 100) / 3)
    assert result.curve[50] == pytest.approx((49.6 + 50 + 50.4) / 3)
    assert result.kpi(130) == 100
    assert sorted(result.curve) == list(range(131))


def test_a_bucket_skipped_by_a_large_pod_gets_the_allocation_from_before_that_pod():
    # 300-milli shares on one card arrive at 30, 60, 90 and 120%; the fourth does not fit.
    result = protocols.run_fgd(one_node_scenario(*sharing_pods(3, 300), cards=1), "fgd", 42)

    assert result.pods == 4 and result.failed == 1
    assert result.curve[45] == 30
    assert result.curve[60] == 60
    assert all(result.curve[b] == 90 for b in range(90, 121))
    assert result.kpi(100) == 90


def test_kpi_100_is_none_when_demand_never_reaches_100_percent():
    result = protocols.run_fgd(one_node_scenario(*sharing_pods(8, 500), cards=8), "fgd", 42, tune=0.6)

    assert max(result.curve) <= 60
    assert result.kpi(100) is None


def test_a_first_pod_that_jumps_past_100_percent_still_records_kpi_100():
    # 8 cards asked of a 7-card cluster: arrived demand goes from 0 to 114% in one event, with
    # nothing allocated while it passed through 100%.
    scn = scenario.Scenario(
        "tiny",
        make_cluster(make_node(name="n0", cards=8, unhealthy=[7])),
        (scenario.TracePod(make_pod(name="big", cards=8)),),
    )
    result = protocols.run_fgd(scn, "fgd", 42)

    assert max(result.curve) > 100
    assert result.kpi(100) == 0


# --- run_fgd on the demo ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_scenario() -> scenario.Scenario:
    return demo.build()


@pytest.mark.parametrize("policy", policies.NAMES)
def test_an_fgd_run_on_the_demo_accounts_for_every_arrival(demo_scenario, policy):
    result = protocols.run_fgd(demo_scenario, policy, 42)
    expected = protocols.fgd_arrivals(demo_scenario.requests(), demo_scenario.capacity_milli, 1.3, random.Random(42))

    assert result.pods == len(expected)
    assert 0 <= result.failed <= result.pods
    assert len(result.decisions_ns) == result.pods
    assert all(0 <= alloc <= 100 for alloc in result.curve.values())
    allocs = [result.curve[b] for b in sorted(result.curve)]
    assert all(later >= earlier - 1e-9 for earlier, later in itertools.pairwise(allocs))  # nothing ever leaves
    assert result.kpi(100) is not None and result.kpi(130) is not None


@pytest.mark.parametrize("policy", ["archipelago", "fgd", "random"])
def test_an_fgd_run_is_deterministic_for_a_seed(demo_scenario, policy):
    first = protocols.run_fgd(demo_scenario, policy, 43)
    second = protocols.run_fgd(demo_scenario, policy, 43)

    assert first.curve == second.curve
    assert (first.failed, first.fragmented_milli) == (second.failed, second.fragmented_milli)


# --- run_replay ---------------------------------------------------------------------------------


def test_a_pod_that_leaves_frees_its_card_for_a_later_pod():
    first, later = make_pod(name="first", cards=1), make_pod(name="later", cards=1)

    stays = protocols.run_replay(one_node_scenario(timed(first, 0), timed(later, 20), cards=1), "fgd", 42)
    leaves = protocols.run_replay(one_node_scenario(timed(first, 0, 10), timed(later, 20), cards=1), "fgd", 42)

    assert (stays.pods, stays.failed) == (2, 1)
    assert (leaves.pods, leaves.failed) == (2, 0)


def test_departures_at_a_time_happen_before_arrivals_at_that_time():
    first, later = make_pod(name="first", cards=1), make_pod(name="later", cards=1)
    result = protocols.run_replay(one_node_scenario(timed(first, 0, 10), timed(later, 10), cards=1), "fgd", 42)

    assert result.failed == 0


def test_a_pod_deleted_at_its_creation_time_leaves_again():
    # A zero-length pod (the openb default trace has one) must not hold its card forever.
    brief, later = make_pod(name="brief", cards=1), make_pod(name="later", cards=1)
    result = protocols.run_replay(one_node_scenario(timed(brief, 10, 10), timed(later, 20), cards=1), "fgd", 42)

    assert result.failed == 0


def test_replay_refuses_pods_without_a_creation_time_naming_one():
    scn = one_node_scenario(timed(make_pod(name="timed", cards=1), 0), timed(make_pod(name="untimed"), None), cards=1)
    with pytest.raises(ValueError, match=r"replay needs creation times; 1 pods have none \(first: untimed\)"):
        protocols.run_replay(scn, "fgd", 42)


def test_time_mean_allocation_runs_from_the_first_to_the_last_arrival():
    # Two cards. One card is held from 0 to 6, none from 6 to 8, when the last pod arrives
    # and takes both: (1,000 x 6 + 0 x 2) / 8 / 2,000 = 37.5%. What happens after 8 is drain.
    early = timed(make_pod(name="early", cards=1), 0, 6)
    last = timed(make_pod(name="last", cards=2), 8, 20)
    result = protocols.run_replay(one_node_scenario(early, last, cards=2), "bestfit", 42)

    assert result.failed == 0
    assert result.alloc_time_mean_pct == pytest.approx(37.5)


def test_a_replay_bucket_revisited_by_a_jump_keeps_the_events_recorded_in_it():
    # Four cards. "a" (2 cards) arrives at 50% demand with 50% allocated, then leaves; "b" (1
    # card) arrives at 25%; "c" (2 cards) jumps demand from 25% to 75% with 25% allocated before
    # it. Bucket 50 saw one event at 50% and was passed through at 25%: its mean is not 25%.
    a = timed(make_pod(name="a", cards=2), 0, 1)
    b = timed(make_pod(name="b", cards=1), 2)
    c = timed(make_pod(name="c", cards=2), 3)
    result = protocols.run_replay(one_node_scenario(a, b, c, cards=4), "fgd", 42)

    assert result.failed == 0
    assert result.curve[25] == 25
    assert result.curve[50] > 25
