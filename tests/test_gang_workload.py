"""The gang workload: generated gangs match the published statistics, YAML gangs read or fail
naming file, line and field, and islands are laid 32 servers to a model."""

from __future__ import annotations

import collections
import math
import os
import statistics
from pathlib import Path

import pytest

from archipelago import cluster as cluster_
from archipelago.cluster import topology
from archipelago.sim import gangs, inputs, traces
from tests.builders import make_node, make_nodes

SIM = Path(__file__).resolve().parent / "data" / "sim"
SEED = 7


def spot_nodes_file() -> Path:
    root = Path(os.environ.get("ARCHIPELAGO_TRACES") or Path(__file__).resolve().parents[2] / "shared" / "traces")
    return root / "alibaba-spot-gpu-v2026" / "node_info_df.csv"


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "gangs.yaml"
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def big_cluster() -> cluster_.Cluster:
    """384 H800 and 128 A100 servers of 8 cards in islands of 32: big enough that no size is capped."""
    return gangs.island_cluster(
        make_nodes(384, prefix="h", model="H800") + make_nodes(128, prefix="a", model="A100-SXM4-80GB")
    )


@pytest.fixture(scope="module")
def drawn(big_cluster) -> list[gangs.GangArrival]:
    return gangs.generate(SEED, gangs=4000, cluster=big_cluster, load=1.0)


# --- the generator ------------------------------------------------------------------------------


def test_most_gangs_use_one_card_and_the_mean_lies_between_helios_and_kalos(drawn):
    cards = [a.gang.cards for a in drawn]

    assert statistics.median(cards) == 1  # Helios, Seren and Kalos: median 1 GPU
    assert sum(c == 1 for c in cards) / len(cards) > 0.5
    assert 3.7 <= statistics.mean(cards) <= 26.8  # Helios 3.7 .. Kalos 26.8 GPUs
    assert max(cards) == 1024  # Seren and Kalos: up to 1,024 GPUs
    assert set(cards) <= set(gangs.SIZES)


def test_durations_are_heavy_tailed_around_the_published_medians(drawn):
    durations = [a.duration for a in drawn]

    assert 122 <= statistics.median(durations) <= 206  # Acme 122-124 s, Helios 206 s
    assert statistics.mean(durations) > 5 * statistics.median(durations)
    assert max(durations) <= gangs.DURATION_MAX_S


def test_priority_classes_have_their_shares_and_only_spot_gangs_are_preemptible(drawn):
    classes = collections.Counter((a.gang.priority, a.gang.preemptible) for a in drawn)

    assert set(classes) == {(1000, False), (100, False), (0, True)}
    for _, priority, preemptible, share in gangs.PRIORITY_CLASSES:
        assert classes[priority, preemptible] / len(drawn) == pytest.approx(share, abs=0.03)


def test_models_are_drawn_in_proportion_to_their_cards(drawn):
    models = collections.Counter(next(iter(a.gang.pod_sets[-1].request.models)) for a in drawn)
    assert models["H800"] / len(drawn) == pytest.approx(0.75, abs=0.03)


def test_pods_take_whole_servers_above_eight_cards_and_multi_pod_gangs_have_a_launcher(drawn):
    for a in drawn:
        gang = a.gang
        worker = gang.pod_sets[-1].request
        assert worker.cards in (1, 2, 4, 8)
        assert worker.cards == min(gang.cards, 8)
        if gang.pod_sets[-1].count > 1:
            assert [s.role for s in gang.pod_sets] == ["launcher", "worker"]
            assert gang.pod_sets[0].request.cards == 0
        else:
            assert len(gang.pod_sets) == 1


def test_large_gangs_that_fit_an_island_require_one_and_other_multi_node_gangs_prefer_one(drawn):
    island_cards = 32 * 8
    for a in drawn:
        request, size = a.gang.topology, a.gang.cards
        if size <= 8:
            assert request is None
        else:
            assert request is not None and request.level == topology.ISLAND
            assert request.required == (gangs.REQUIRED_FROM_CARDS <= size <= island_cards)


def test_only_spot_gangs_of_four_workers_or_more_are_elastic_down_to_half(drawn):
    for a in drawn:
        gang, workers = a.gang, a.gang.pod_sets[-1].count
        if gang.preemptible and workers >= 4:
            assert gang.min_member == 1 + workers // 2
        else:
            assert not gang.elastic


def test_arrivals_start_at_zero_in_order_and_offer_the_load_inside_the_window(big_cluster):
    arrivals = gangs.generate(SEED, gangs=3000, cluster=big_cluster, load=0.8)
    window = arrivals[-1].arrival
    offered = sum(a.gang.cards * min(a.duration, window - a.arrival) for a in arrivals)

    assert arrivals[0].arrival == 0
    assert all(a.arrival <= b.arrival for a, b in zip(arrivals, arrivals[1:], strict=False))
    assert all(a.gang.queued_at == a.arrival for a in arrivals)
    assert offered / (big_cluster.total_cards * window) == pytest.approx(0.8, rel=0.01)
    assert gangs.offered_load(arrivals, big_cluster) == pytest.approx(0.8, rel=0.01)


def test_too_few_gangs_for_the_cluster_arrive_over_the_shortest_window_and_offer_less(big_cluster):
    arrivals = gangs.generate(SEED, gangs=100, cluster=big_cluster, load=1.0)

    assert arrivals[-1].arrival == pytest.approx(gangs.MIN_WINDOW_S, abs=0.1)
    assert gangs.offered_load(arrivals, big_cluster) < 0.5


def test_the_same_seed_gives_the_same_gangs_and_another_seed_others(big_cluster):
    one = gangs.generate(3, gangs=50, cluster=big_cluster)
    assert gangs.generate(3, gangs=50, cluster=big_cluster) == one
    assert gangs.generate(4, gangs=50, cluster=big_cluster) != one


def test_gangs_are_capped_to_half_their_model_and_to_one_node_on_small_servers():
    small = cluster_.build(
        make_nodes(8, prefix="h", model="H800") + [make_node(name=f"t{i}", cards=1, model="A10") for i in range(64)]
    )
    arrivals = gangs.generate(SEED, gangs=500, cluster=small)
    by_model = collections.defaultdict(list)
    for a in arrivals:
        by_model[next(iter(a.gang.pod_sets[-1].request.models))].append(a.gang.cards)

    assert max(by_model["H800"]) == 32
    assert max(by_model["A10"]) == 1


def test_a_cluster_without_cards_is_refused():
    with pytest.raises(ValueError, match="no healthy cards"):
        gangs.generate(SEED, gangs=10, cluster=cluster_.build([make_node(cards=0)]))


# --- islands ------------------------------------------------------------------------------------


def test_islands_take_32_servers_of_one_model_and_the_spine_is_the_model():
    node_list = make_nodes(70, prefix="h", model="H800") + make_nodes(40, prefix="a", model="A100-SXM4-80GB")
    node_list += make_nodes(5, prefix="t", cards=1, model="A10")

    laid = gangs.with_islands(node_list)
    islands = collections.Counter(n.labels.get(topology.ISLAND) for n in laid)

    assert [n.name for n in laid] == [n.name for n in node_list]
    assert islands == {"H800-0": 32, "H800-1": 32, "H800-2": 6, "A100-SXM4-80GB-0": 32, "A100-SXM4-80GB-1": 8, None: 5}
    assert all(n.labels[topology.SPINE] == n.model for n in laid if n.card_count >= 8)
    assert all(not n.labels for n in laid if n.card_count < 8)


def test_island_size_is_a_parameter():
    laid = gangs.island_cluster(make_nodes(10, model="H800"), per_island=4)
    assert sorted(len(ks) for ks in laid.domains(topology.ISLAND).values()) == [2, 4, 4]


def test_the_spot_gpu_node_list_gets_32_server_islands_per_model():
    path = spot_nodes_file()
    if not path.exists():
        pytest.skip(f"the spot-GPU node list is not at {path}; set ARCHIPELAGO_TRACES to the traces directory")
    built = gangs.island_cluster(traces.read_nodes_csv(path))
    big = collections.Counter(n.model for n in built.nodes if n.card_count >= 8)
    islands = {
        key: members for key, members in built.domains(topology.ISLAND).items() if len(members) > 1 or key[-1][0] != "<"
    }

    assert (len(built), built.total_cards) == (4278, 10412)
    assert len(islands) == sum(math.ceil(count / 32) for count in big.values())
    assert max(len(members) for members in islands.values()) == 32
    for members in islands.values():
        assert len({built.nodes[i].model for i in members}) == 1


# --- the YAML reader ----------------------------------------------------------------------------


def test_the_example_gang_file_reads_every_field():
    arrivals = {a.gang.name: a for a in gangs.read_gangs_yaml(SIM / "gangs.yaml")}
    pretrain, sweep, chat = arrivals["pretrain"], arrivals["sweep"], arrivals["chat"]

    assert list(arrivals) == ["pretrain", "finetune", "sweep", "eval", "chat"]
    assert (pretrain.arrival, pretrain.duration, pretrain.gang.priority, pretrain.gang.cards) == (0, 3600, 1000, 32)
    assert pretrain.gang.topology.required and pretrain.gang.topology.level == topology.ISLAND
    assert [p.name for p in pretrain.gang.pods()][:2] == ["pretrain-launcher-0", "pretrain-worker-0"]
    assert (sweep.gang.preemptible, sweep.gang.min_member, sweep.gang.queued_at) == (True, 2, 120)
    assert chat.gang.pod_sets[0].request.milli_per_card == 500
    assert chat.gang.pod_sets[0].request.device_memory_mib == 40960


def test_gang_files_are_told_apart_from_pod_workloads_by_their_top_level_key(tmp_path):
    assert gangs.is_gang_yaml(SIM / "gangs.yaml")
    assert not gangs.is_gang_yaml(SIM / "workload.yaml")
    assert not gangs.is_gang_yaml(tmp_path / "missing.yaml")
    assert not gangs.is_gang_yaml(write(tmp_path, "pods: [unclosed"))
    assert gangs.is_gang_yaml(write(tmp_path, "gangs: [unclosed"))


GANG = ("gangs:", "  - name: train", "    duration: 60", "    podSets:")


@pytest.mark.parametrize(
    "lines, line, field, fragment",
    [
        ((*GANG, "      - role: worker", "        cards: two"), 6, "gangs[0].podSets[0].cards", "whole number"),
        ((*GANG, "      - role: worker", "        gpus: 2"), 6, "gangs[0].podSets[0].gpus", "unknown key"),
        (("gangs:", "  - name: train", "    podSets: [{role: w}]"), 2, "gangs[0].duration", "is required"),
        ((*GANG, "      - {role: w}", "    topology: {level: rack}"), 6, "gangs[0].topology.level", "archipelago.dev"),
        (
            (*GANG, "      - {role: w, count: 2}", "    minMember: 3"),
            6,
            "gangs[0].minMember",
            "minMember must be between",
        ),
        ((*GANG, "      - {role: w}", "      - {role: w}"), 6, "gangs[0].podSets[1].role", "duplicate role"),
        ((*GANG, "      - {role: w, milliPerCard: 500}"), 5, "gangs[0].podSets[0].milliPerCard", "cards >= 1"),
        ((*GANG, "      - {role: w}", *GANG[1:], "      - {role: w}"), 6, "gangs[1].name", "duplicate gang name"),
    ],
)
def test_a_bad_gang_file_is_refused_naming_file_line_and_field(tmp_path, lines, line, field, fragment):
    path = write(tmp_path, *lines)

    with pytest.raises(inputs.InputError) as caught:
        gangs.read_gangs_yaml(path)

    error = caught.value
    assert (error.file, error.line, error.field) == (str(path), line, field)
    assert fragment in str(error)
