"""The gang replay protocol and the baseline placers: hand-worked timelines, evictions that
requeue, no partial gang ever, and ``archipelago simulate --workload gangs``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from archipelago import cycle, workload
from archipelago.cli import main
from archipelago.cluster import ledger as ledger_
from archipelago.placement import baselines, plan, validate
from archipelago.sim import gang_replay, gang_report, gangs
from tests.builders import make_cluster, make_ledger, make_node, make_nodes
from tests.gang_builders import make_allocations, make_eviction, make_gang, make_plan, make_running, make_snapshot

SIM = Path(__file__).resolve().parent / "data" / "sim"
CONFIG = plan.Config()
BASELINES = {"greedy": baselines.first_fit, "volcano-like": baselines.volcano_like}


def arrive(gang: workload.Gang, *, at: float, runs: float) -> gangs.GangArrival:
    return gangs.GangArrival(dataclasses.replace(gang, queued_at=at), at, runs)


def two_islands() -> list:
    """Islands a (n0, n1) and b (n2, n3) of 8-card H800 servers."""
    return [make_node(name=f"n{i}", island="a" if i < 2 else "b") for i in range(4)]


def nodes_of(snapshot: plan.Snapshot, allocations) -> set[str]:
    return {snapshot.ledger.cluster.nodes[a.node].name for a in allocations}


# --- timelines worked by hand -------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", gang_replay.SCHEDULERS)
def test_a_gang_waits_for_a_departure_and_its_queue_delay_is_exactly_that(scheduler):
    cluster = make_cluster(*make_nodes(2, island="a"))
    big = arrive(make_gang(name="big", pods=2, cards=8), at=0, runs=100)
    late = arrive(make_gang(name="late", pods=1, cards=8), at=10, runs=50)

    result = gang_replay.replay([big, late], cluster, scheduler)

    assert result.first_start == {"big": 0, "late": 100}
    assert result.queue_delay_mean_s == 45  # (0 + 90) / 2
    assert result.queue_delay_p95_s == pytest.approx(85.5)
    assert (result.gangs_placed, result.end_s, result.preemptions) == (2, 150, 0)
    assert result.gpu_alloc_pct == 100  # every card busy from the first arrival to the last


@pytest.mark.parametrize("scheduler", gang_replay.SCHEDULERS)
def test_a_gang_that_never_fits_counts_with_its_wait_until_the_last_event(scheduler):
    cluster = make_cluster(*make_nodes(2, island="a"))
    fits = arrive(make_gang(name="fits", pods=1, cards=8), at=0, runs=100)
    never = arrive(make_gang(name="never", pods=3, cards=8), at=5, runs=10)

    result = gang_replay.replay([fits, never], cluster, scheduler)

    assert result.first_start == {"fits": 0}
    assert result.end_s == 100
    assert result.queue_delay_mean_s == 47.5  # (0 + 95) / 2


@pytest.mark.parametrize("scheduler", gang_replay.SCHEDULERS)
def test_with_a_period_gangs_start_at_the_next_multiple_of_it_on_everything_since(scheduler):
    cluster = make_cluster(*make_nodes(2, island="a"))
    first = arrive(make_gang(name="first", pods=1, cards=8), at=0, runs=100)
    second = arrive(make_gang(name="second", pods=1, cards=8), at=3, runs=55)
    third = arrive(make_gang(name="third", pods=1, cards=8), at=7, runs=10)

    result = gang_replay.replay([first, second, third], cluster, scheduler, period_s=10)

    # 0 is on the grid; the arrivals at 3 and 7 wait for the cycle at 10, where only second
    # fits; it leaves at 65, and third starts at the next multiple, 70.
    assert result.first_start == {"first": 0, "second": 10, "third": 70}
    assert result.cycles == 3  # at 0, 10 and 70: not at 3, 7 or 65, though each is an event


def test_a_negative_period_is_refused():
    with pytest.raises(ValueError, match="period_s"):
        gang_replay.replay([], make_cluster(make_node()), "greedy", period_s=-1)


def test_allocation_is_weighted_by_time_from_the_first_arrival_to_the_last():
    cluster = make_cluster(make_node(cards=8))
    half = arrive(make_gang(name="half", pods=1, cards=4), at=0, runs=30)
    later = arrive(make_gang(name="later", pods=1, cards=1), at=100, runs=10)

    result = gang_replay.replay([half, later], cluster, "greedy")

    assert result.gpu_alloc_pct == pytest.approx(15)  # 50% for 30 s of 100


def test_one_island_shares_count_multi_node_placements_and_all_placements():
    cluster = make_cluster(make_node(name="n0", island="a"), make_node(name="n1", island="b"))
    spanning = arrive(make_gang(name="spanning", pods=2, cards=8), at=0, runs=10)
    single = arrive(make_gang(name="single", pods=1, cards=8), at=20, runs=10)

    result = gang_replay.replay([spanning, single], cluster, "greedy")

    assert result.gangs_single_island_pct == 0
    assert result.gangs_single_island_all_pct == 50


def place_on(where: dict[str, tuple[str, ...]]):
    """A scheduler that puts each gang's pods on the nodes ``where`` names for it, one pod per node."""

    def schedule(snapshot, pending, config):
        placed = {g.name: make_allocations(snapshot.ledger, g, *where[g.name]) for g in pending}
        return make_plan(placed=placed)

    return schedule


def test_fewest_islands_share_judges_a_gang_by_the_islands_its_cards_need():
    # islands of 16 cards: a (n0, n1), b (n2, n3), c (n4, n5)
    cluster = make_cluster(*(make_node(name=f"n{i}", island="abc"[i // 2]) for i in range(6)))
    fewest = arrive(make_gang(name="fewest", pods=4, cards=8), at=0, runs=10)  # 32 cards need 2 islands
    spread = arrive(make_gang(name="spread", pods=3, cards=8), at=20, runs=10)  # 24 cards need 2, takes 3
    one = arrive(make_gang(name="one", pods=2, cards=8), at=40, runs=10)  # in one island, as it can be

    where = {"fewest": ("n0", "n1", "n2", "n3"), "spread": ("n0", "n2", "n4"), "one": ("n4", "n5")}
    result = gang_replay.replay([fewest, spread, one], cluster, place_on(where))

    assert result.gangs_fewest_islands_pct == pytest.approx(200 / 3)
    assert result.gangs_single_island_pct == pytest.approx(100 / 3)  # only "one": "fewest" can't be in one


# --- evictions ----------------------------------------------------------------------------------


def evict_for_the_first_waiting(snapshot, pending, config):
    """First fit; if a gang waits, evict every running preemptible gang of lower priority for it."""
    result = baselines.first_fit(snapshot, pending, config)
    waiting = [g for g in pending if g.name in result.waiting]
    if not waiting:
        return result
    top = waiting[0]
    victims = [r for r in snapshot.running.values() if r.gang.preemptible and r.gang.priority < top.priority]
    ledger = snapshot.ledger.copy()
    for running in victims:
        for pod in running.pods:
            ledger.release(pod)
    placed = baselines.first_fit(plan.Snapshot(ledger, {}, snapshot.now), [top], config).placed
    evictions = [make_eviction(r, for_gang=top.name, now=snapshot.now) for r in victims]
    return make_plan(placed=placed, evictions=evictions if placed else ())


@pytest.mark.parametrize("scheduler", [evict_for_the_first_waiting, "archipelago"])
def test_an_evicted_gang_is_requeued_and_redoes_its_whole_duration(scheduler):
    cluster = make_cluster(make_node(cards=8))
    spot = arrive(make_gang(name="spot", pods=1, cards=8, preemptible=True), at=0, runs=100)
    urgent = arrive(make_gang(name="urgent", pods=1, cards=8, priority=1000), at=10, runs=50)
    after = arrive(make_gang(name="after", pods=1, cards=8), at=65, runs=10)

    config = plan.Config(preemption_delay_s=0, preemption_exempt_s=0)
    result = gang_replay.replay([spot, urgent, after], cluster, scheduler, config=config)

    # spot restarts at 60 when urgent leaves and runs its full 100 s again, so after waits until 160
    assert result.first_start == {"spot": 0, "urgent": 10, "after": 160}
    assert result.preemptions == 1
    assert result.lost_card_seconds == 80  # 8 cards for 10 s
    assert result.end_s == 170


@pytest.mark.parametrize("exempt, second_starts", [(0, 100), (30, 120)])
def test_a_restarted_gang_is_preempted_again_only_once_its_exemption_is_over(exempt, second_starts):
    cluster = make_cluster(make_node(cards=8))
    spot = arrive(make_gang(name="spot", pods=1, cards=8, preemptible=True), at=0, runs=100)
    first = arrive(make_gang(name="first", pods=1, cards=8, priority=1000), at=40, runs=50)
    second = arrive(make_gang(name="second", pods=1, cards=8, priority=1000), at=100, runs=10)
    config = plan.Config(preemption_delay_s=0, preemption_exempt_s=exempt)

    result = gang_replay.replay([spot, first, second], cluster, "archipelago", config=config)

    # first evicts spot at 40 (it has run 40 s); spot restarts at 90, when first leaves; second
    # may evict it again once it has run the exemption, even with no event then
    assert result.first_start == {"spot": 0, "first": 40, "second": second_starts}
    assert (result.preemptions, result.gangs_preempted, result.preemptions_max_per_gang) == (2, 1, 2)
    assert result.lost_card_seconds == 8 * 40 + 8 * (second_starts - 90)


def test_a_gang_preempts_once_its_delay_is_over_even_when_no_event_falls_then():
    cluster = make_cluster(make_node(cards=8))
    spot = arrive(make_gang(name="spot", pods=1, cards=8, preemptible=True), at=0, runs=100)
    urgent = arrive(make_gang(name="urgent", pods=1, cards=8, priority=1000), at=10, runs=50)

    config = plan.Config(preemption_delay_s=25, preemption_exempt_s=0)
    result = gang_replay.replay([spot, urgent], cluster, "archipelago", config=config)

    # urgent may preempt at 35, when nothing else happens; spot then reruns 100 s from 85
    assert result.first_start == {"spot": 0, "urgent": 35}
    assert result.lost_card_seconds == 8 * 35
    assert result.end_s == 185


def test_an_elastic_gang_that_shrinks_keeps_running_until_its_planned_end():
    cluster = make_cluster(*make_nodes(2, island="a"))
    elastic = arrive(make_gang(name="elastic", pods=4, cards=4, preemptible=True, min_member=2), at=0, runs=100)
    urgent = arrive(make_gang(name="urgent", pods=1, cards=8, priority=1000), at=10, runs=20)

    def shrink_for_urgent(snapshot, pending, config):
        if "elastic" not in snapshot.running:
            return baselines.first_fit(snapshot, pending, config)
        running = snapshot.running["elastic"]
        leaving = running.pods[-2:]
        ledger = snapshot.ledger.copy()
        for pod in leaving:
            ledger.release(pod)
        placed = baselines.first_fit(plan.Snapshot(ledger, {}, snapshot.now), pending, config).placed
        eviction = make_eviction(running, for_gang="urgent", pods=leaving, whole=False, now=snapshot.now)
        return make_plan(placed=placed, evictions=[eviction])

    result = gang_replay.replay([elastic, urgent], cluster, shrink_for_urgent)

    assert result.first_start == {"elastic": 0, "urgent": 10}
    assert (result.shrinks, result.preemptions) == (1, 0)
    assert result.end_s == 100


# --- plans the replay refuses -------------------------------------------------------------------


def test_a_plan_that_over_commits_raises():
    cluster = make_cluster(make_node(cards=8))
    first = arrive(make_gang(name="first", pods=1, cards=8), at=0, runs=100)
    second = arrive(make_gang(name="second", pods=1, cards=8), at=10, runs=100)

    def place_everything(snapshot, pending, config):
        empty = make_ledger(snapshot.ledger.cluster)
        return baselines.first_fit(plan.Snapshot(empty, {}, snapshot.now), pending, config)

    with pytest.raises(ledger_.CapacityError):
        gang_replay.replay([first, second], cluster, place_everything)


def test_a_plan_that_places_a_gang_not_pending_or_changes_the_snapshot_raises():
    cluster = make_cluster(make_node(cards=8))
    only = [arrive(make_gang(name="only", pods=1, cards=1), at=0, runs=10)]
    ghost = make_gang(name="ghost", pods=1, cards=1)

    def place_a_ghost(snapshot, pending, config):
        return baselines.first_fit(snapshot, [ghost], config)

    def write_to_the_snapshot(snapshot, pending, config):
        make_running(snapshot.ledger, ghost, "n0")
        return plan.Plan()

    with pytest.raises(ValueError, match="not pending"):
        gang_replay.replay(only, cluster, place_a_ghost)
    with pytest.raises(RuntimeError, match="changed the snapshot"):
        gang_replay.replay(only, cluster, write_to_the_snapshot)


def test_schedulers_are_found_by_name_and_an_unknown_name_is_refused():
    assert gang_replay.scheduler("archipelago") is cycle.run
    assert gang_replay.scheduler("greedy") is baselines.first_fit
    with pytest.raises(ValueError, match="volcano-like"):
        gang_replay.scheduler("kube")


# --- the baselines ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_never_place_a_partial_gang_over_a_generated_day(name):
    cluster = gangs.island_cluster(make_nodes(12, model="H800") + make_nodes(8, prefix="a", model="A100-SXM4-80GB"), 8)
    arrivals = gangs.generate(11, gangs=200, cluster=cluster, load=1.5)

    def checked(snapshot, pending, config):
        result = BASELINES[name](snapshot, pending, config)
        assert validate.violations(snapshot, pending, result) == []
        return result

    result = gang_replay.replay(arrivals, cluster, checked)
    assert result.gangs_placed > 150


@pytest.mark.parametrize("place", BASELINES.values())
def test_a_gang_that_does_not_fit_whole_is_not_placed_and_the_snapshot_stays_untouched(place):
    ledger = make_ledger(make_cluster(*make_nodes(2, island="a")))
    make_running(ledger, make_gang(name="busy", pods=1, cards=4), "n0")
    snapshot = make_snapshot(ledger)
    generation = ledger.generation

    result = place(snapshot, [make_gang(name="pair", pods=2, cards=8)], CONFIG)

    assert result.placed == {}
    assert result.waiting["pair"].code is plan.ReasonCode.INSUFFICIENT_CAPACITY
    assert ledger.generation == generation


@pytest.mark.parametrize("place", BASELINES.values())
def test_an_elastic_gang_gets_every_pod_that_fits_but_never_fewer_than_min_member(place):
    snapshot = make_snapshot(make_ledger(make_cluster(*make_nodes(3, island="a"))))
    elastic = make_gang(name="elastic", pods=4, cards=8, min_member=2)
    rigid = make_gang(name="rigid", pods=4, cards=8)

    assert len(place(snapshot, [elastic], CONFIG).placed["elastic"]) == 3
    assert "rigid" in place(snapshot, [rigid], CONFIG).waiting


def test_volcano_like_packs_the_most_allocated_island_and_first_fit_takes_node_order():
    ledger = make_ledger(make_cluster(*two_islands()))
    make_running(ledger, make_gang(name="busy", pods=1, cards=4), "n2")
    snapshot = make_snapshot(ledger)
    pair = make_gang(name="pair", pods=2, cards=4)

    packed = baselines.volcano_like(snapshot, [pair], CONFIG).placed["pair"]
    first = baselines.first_fit(snapshot, [pair], CONFIG).placed["pair"]

    assert nodes_of(snapshot, packed) == {"n2", "n3"}
    assert nodes_of(snapshot, first) == {"n0"}


def test_first_fit_holds_a_required_gang_in_its_first_pods_island_where_volcano_like_finds_one():
    ledger = make_ledger(make_cluster(*two_islands()))
    make_running(ledger, make_gang(name="half", pods=1, cards=4), "n0")
    make_running(ledger, make_gang(name="full", pods=1, cards=8), "n1")
    snapshot = make_snapshot(ledger)
    pair = make_gang(name="pair", pods=2, cards=4, topology="island-required")

    assert "pair" in baselines.first_fit(snapshot, [pair], CONFIG).waiting
    assert nodes_of(snapshot, baselines.volcano_like(snapshot, [pair], CONFIG).placed["pair"]) <= {"n2", "n3"}


def test_baselines_go_in_queue_order_priority_first_then_arrival():
    snapshot = make_snapshot(make_ledger(make_cluster(make_node(cards=8))))
    early = make_gang(name="early", pods=1, cards=8, queued_at=0)
    later = make_gang(name="later", pods=1, cards=8, queued_at=5)
    urgent = make_gang(name="urgent", pods=1, cards=8, priority=10, queued_at=9)

    for place in BASELINES.values():
        assert list(place(snapshot, [later, early], CONFIG).placed) == ["early"]
        assert list(place(snapshot, [early, urgent], CONFIG).placed) == ["urgent"]


# --- the command --------------------------------------------------------------------------------


def simulate(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["simulate", *map(str, args)])


def test_simulate_gangs_prints_the_figures_of_every_gang_scheduler_as_json():
    result = simulate("--workload", "gangs", "--gangs", "40", "--json", "--jobs", "1")

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert list(out) == list(gang_replay.SCHEDULERS)
    for name, figures in out.items():
        for key in gang_report.FIGURES:
            assert key in figures, (name, key)
        assert 0 < figures["gpu_alloc_pct"] <= 100
        assert figures["gangs"] == 40


def test_simulate_gangs_with_a_period_runs_fewer_cycles_and_says_so():
    every_event = json.loads(simulate("--workload", "gangs", "--gangs", "40", "--json", "--jobs", "1").stdout)
    result = simulate("--workload", "gangs", "--gangs", "40", "--json", "--jobs", "1", "--period", "60")

    assert result.exit_code == 0, result.output
    periodic = json.loads(result.stdout)
    for name in gang_replay.SCHEDULERS:
        assert periodic[name]["period_s"] == 60
        assert periodic[name]["cycles"] < every_event[name]["cycles"]
    table = simulate("--workload", "gangs", "--gangs", "40", "--policies", "greedy", "--period", "60")
    assert "a cycle every 60 s" in table.stdout


def test_simulate_gangs_runs_a_yaml_gang_file_on_a_yaml_cluster_and_tables_it():
    args = ("--cluster", SIM / "cluster.yaml", "--workload", SIM / "gangs.yaml", "--policies", "greedy,volcano-like")
    result = simulate(*args)

    assert result.exit_code == 0, result.output
    assert "volcano-like" in result.stdout and "5 of 5" in result.stdout


def test_simulate_gangs_refuses_a_bad_gang_file_with_one_line_naming_file_line_and_field(tmp_path):
    path = tmp_path / "gangs.yaml"
    path.write_text("gangs:\n  - name: train\n    duration: soon\n    podSets: [{role: w}]\n")

    result = simulate("--workload", path)

    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"{path}:3: field 'gangs[0].duration'" in result.output


def test_simulate_gangs_reports_invalid_yaml_in_a_gang_file_by_its_line(tmp_path):
    path = tmp_path / "gangs.yaml"
    path.write_text("gangs:\n  - name: [train\n")

    result = simulate("--workload", path)

    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"{path}:" in result.output and "invalid YAML" in result.output


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("--policies", "greedy,kube"), "unknown scheduler 'kube'"),
        (("--bound",), "pod workload"),
    ],
)
def test_simulate_gangs_refuses_what_it_cannot_run(args, fragment):
    result = simulate("--workload", "gangs", "--gangs", "5", *args)

    assert result.exit_code == 2 and "Traceback" not in result.output
    assert fragment in result.output


def test_a_negative_preemption_delay_is_refused_naming_the_option():
    result = simulate("--workload", "gangs", "--gangs", "10", "--preemption-delay", "-1")

    assert result.exit_code != 0 and "--preemption-delay" in result.output
    with pytest.raises(ValueError, match="preemption_delay_s"):
        plan.Config(preemption_delay_s=-1)


def test_the_queueing_strategy_and_the_exemption_reach_every_cycle_and_bad_ones_are_refused(monkeypatch):
    seen = []
    compare = gang_replay.compare

    def spy(*args, config, **kwargs):
        seen.append((config.queueing, config.preemption_exempt_s))
        return compare(*args, config=config, **kwargs)

    monkeypatch.setattr(gang_replay, "compare", spy)
    options = ("--queueing", "BestEffortFIFO", "--preemption-exempt", "45")
    result = simulate("--workload", "gangs", "--gangs", "10", *options, "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert seen == [(plan.Queueing.BEST_EFFORT_FIFO, 45.0)]

    result = simulate("--workload", "gangs", "--gangs", "10", "--preemption-exempt", "-1")
    assert result.exit_code == 2 and "--preemption-exempt" in result.output
    with pytest.raises(ValueError, match="preemption_exempt_s must not be negative seconds, got -1"):
        plan.Config(preemption_exempt_s=-1)

    result = simulate("--workload", "gangs", "--gangs", "10", "--queueing", "StrictFIFO")
    assert result.exit_code == 2 and "--queueing" in result.output and "BestEffortFIFO" in result.output
    assert plan.Config(queueing="BestEffortFIFO").queueing is plan.Queueing.BEST_EFFORT_FIFO
    with pytest.raises(
        ValueError, match="queueing must be one of MostCards, BestEffortFIFO, MostGangs, got 'StrictFIFO'"
    ):
        plan.Config(queueing="StrictFIFO")
